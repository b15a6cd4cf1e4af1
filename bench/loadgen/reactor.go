package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The subscribers' read side. A goroutine per connection costs two read
// syscalls per message (one for the data, one that returns EAGAIN) plus the
// Go netpoller's epoll calls, and syscalls are the loadgen's main cost. Here
// one loop waits on a level-triggered epoll set and reads each ready socket
// once, parsing every whole WebSocket frame that read brought in, so a
// message costs at most one read and a share of one epoll_wait.
//
// Gorilla still does the dial and handshake; the socket is then duplicated
// and the gorilla connection closed (the dup keeps the TCP connection open).

type reactor struct {
	epfd  int
	conns []atomic.Pointer[sub]
	st    *stats
	buf   []byte
}

func newReactor(st *stats, maxFd int) (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	r := &reactor{epfd: epfd, conns: make([]atomic.Pointer[sub], maxFd), st: st, buf: make([]byte, 256<<10)}
	go r.loop()
	return r, nil
}

// detach takes the socket out of a freshly dialled gorilla connection.
func detach(c *websocket.Conn) (int, error) {
	tc, ok := c.UnderlyingConn().(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return -1, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		_ = c.Close()
		return -1, err
	}
	fd := -1
	var dupErr error
	_ = raw.Control(func(f uintptr) { fd, dupErr = syscall.Dup(int(f)) })
	_ = c.Close()
	if dupErr != nil {
		return -1, dupErr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (r *reactor) add(s *sub) error {
	if s.fd >= len(r.conns) {
		return fmt.Errorf("fd %d beyond the open-files limit", s.fd)
	}
	r.conns[s.fd].Store(s)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(s.fd)}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		r.conns[s.fd].Store(nil)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (r *reactor) remove(s *sub, count bool) {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	r.conns[s.fd].Store(nil)
	_ = syscall.Close(s.fd)
	if count && r.st.measuring.Load() {
		r.st.disconnects.Add(1)
	}
}

func (r *reactor) loop() {
	events := make([]syscall.EpollEvent, 1024)
	for {
		n, err := syscall.EpollWait(r.epfd, events, 200)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			r.st.lastErr.Store("epoll_wait: " + err.Error())
			return
		}
		for i := 0; i < n; i++ {
			if s := r.conns[events[i].Fd].Load(); s != nil {
				r.readOnce(s)
			}
		}
	}
}

// readOnce does one read and handles every complete frame in what it got.
func (r *reactor) readOnce(s *sub) {
	var data []byte
	fromPending := len(s.pending) > 0
	if !fromPending {
		n, err := syscall.Read(s.fd, r.buf)
		if n <= 0 {
			r.readFailed(s, n, err)
			return
		}
		data = r.buf[:n]
	} else {
		if cap(s.pending)-len(s.pending) < 16<<10 {
			grown := make([]byte, len(s.pending), 2*cap(s.pending)+16<<10)
			copy(grown, s.pending)
			s.pending = grown
		}
		n, err := syscall.Read(s.fd, s.pending[len(s.pending):cap(s.pending)])
		if n <= 0 {
			r.readFailed(s, n, err)
			return
		}
		data = s.pending[:len(s.pending)+n]
	}
	now := time.Now().UnixNano()
	rest := r.frames(s, data, now)
	// Keep a partial frame for the next read. rest is a suffix of data, which
	// is either the shared buffer or s.pending itself (copy handles overlap).
	if fromPending {
		s.pending = s.pending[:copy(s.pending[:cap(s.pending)], rest)]
	} else {
		s.pending = append(s.pending[:0], rest...)
	}
}

func (r *reactor) readFailed(s *sub, n int, err error) {
	if n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)) {
		return
	}
	if err != nil {
		r.st.lastErr.Store("subscriber read: " + err.Error())
	}
	r.remove(s, true)
}

// frames handles the whole frames at the start of data and returns the rest.
// Frames from a server are never masked.
func (r *reactor) frames(s *sub, data []byte, now int64) []byte {
	for len(data) >= 2 {
		fin := data[0]&0x80 != 0
		op := data[0] & 0x0f
		l := uint64(data[1] & 0x7f)
		h := 2
		switch l {
		case 126:
			if len(data) < 4 {
				return data
			}
			l, h = uint64(binary.BigEndian.Uint16(data[2:4])), 4
		case 127:
			if len(data) < 10 {
				return data
			}
			l, h = binary.BigEndian.Uint64(data[2:10]), 10
		}
		if data[1]&0x80 != 0 {
			h += 4 // a masking key, which a server must not send; skip it anyway
		}
		if uint64(len(data)-h) < l {
			return data
		}
		payload := data[h : h+int(l)]
		data = data[h+int(l):]
		switch op {
		case 0x1, 0x2: // text, binary
			if fin {
				s.handle(payload, now, r.st)
			} else {
				s.frag = append(s.frag[:0], payload...)
			}
		case 0x0: // continuation
			s.frag = append(s.frag, payload...)
			if fin {
				s.handle(s.frag, now, r.st)
				s.frag = s.frag[:0]
			}
		case 0x9: // ping
			_ = s.writeFrame(0xA, payload)
		case 0x8: // close
			_ = s.writeFrame(0x8, payload)
			r.st.lastErr.Store(fmt.Sprintf("gateway closed a subscriber: %q", payload))
			r.remove(s, true)
			return nil
		}
	}
	return data
}

// writeFrame sends one client frame with an all-zero mask (allowed, and the
// payload then goes as it is). Writes are rare: subscribes, pongs, close.
func (s *sub) writeFrame(op byte, payload []byte) error {
	b := make([]byte, 0, len(payload)+14)
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0)
	b = append(b, payload...)
	deadline := time.Now().Add(time.Second)
	for len(b) > 0 {
		n, err := syscall.Write(s.fd, b)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
				continue
			}
			return err
		}
		b = b[n:]
	}
	return nil
}
