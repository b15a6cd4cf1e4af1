package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

var (
	evWarm       = []byte(`"warmup"`)
	evWarmShared = []byte(`"warmup_shared"`)
	evWarmOwn    = []byte(`"warmup_own"`)
	typeError    = []byte(`"error"`)
)

// stats is shared by every subscriber's read loop.
type stats struct {
	lat         hist
	received    atomic.Uint64
	outOfOrder  atomic.Uint64
	errorFrames atomic.Uint64
	otherFrames atomic.Uint64
	disconnects atomic.Uint64
	lastRecvNs  atomic.Int64
	warm        atomic.Int64 // subscribers that saw a plain or shared warm-up
	warmOwn     atomic.Int64 // subscribers that saw a warm-up on their own channel
	measuring   atomic.Bool  // stop counting once the run is over
	checkOrder  bool
	pong        bool // Centrifugo: answer its "{}" pings
	// Deliveries per sequence number, to name the broadcasts that went missing.
	perSeq  []atomic.Int32
	lastErr atomic.Value
	// Fanout window: the publisher sleeps until received reaches wakeAt.
	wakeAt  atomic.Int64
	waiting atomic.Bool
	wake    chan struct{}
}

type sub struct {
	idx     int
	channel string // own channel (channels mode), else ""
	fd      int
	closed  atomic.Bool
	warm    atomic.Bool
	warmOwn atomic.Bool
	lastSeq int64
	pending []byte // a partial frame left by the last read
	frag    []byte // a fragmented message being put together
}

func wsURL(base, userID string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "user_id=" + url.QueryEscape(userID)
}

func newDialer(readBuf int) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   readBuf,
		WriteBufferSize:  1024,
		WriteBufferPool:  &sync.Pool{},
	}
}

// sourceDialers gives one dialer per -source-ips address (or one default dialer).
// One source address has ip_local_port_range's ports (about 28k) per destination, so
// C100K on one machine dials from several loopback addresses: all of 127.0.0.0/8 is
// on lo, nothing needs configuring.
func sourceDialers(readBuf int, ips []string) ([]*websocket.Dialer, error) {
	if len(ips) == 0 {
		return []*websocket.Dialer{newDialer(readBuf)}, nil
	}
	out := make([]*websocket.Dialer, 0, len(ips))
	for _, ip := range ips {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, fmt.Errorf("-source-ips: %q is not an IP address", ip)
		}
		d := newDialer(readBuf)
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: addr}, Timeout: 10 * time.Second}
		d.NetDialContext = nd.DialContext
		out = append(out, d)
	}
	return out, nil
}

func dial(d *websocket.Dialer, u string, attempts int) (*websocket.Conn, error) {
	var err error
	for a := 0; a < attempts; a++ {
		var c *websocket.Conn
		var resp *http.Response
		c, resp, err = d.Dial(u, nil)
		if err == nil {
			return c, nil
		}
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		time.Sleep(time.Duration(50*(a+1)) * time.Millisecond)
	}
	return nil, err
}

func subscribeFrame(channel string) []byte {
	return []byte(`{"type":"subscribe","channel":` + quote(channel) + `,"listen":["broadcast"]}`)
}

func quote(s string) string {
	// Channel and event names here are ASCII letters, digits and '-'/'_'.
	return `"` + s + `"`
}

// connectAll dials n subscribers with bounded concurrency, subscribes each to
// its channels and hands it to the reactor. Failed dials are counted, not fatal.
func connectAll(cfg *config, st *stats, r *reactor, n int, channels func(i int) []string, own func(i int) string) ([]*sub, int) {
	dialers, err := sourceDialers(4096, cfg.sourceIPs)
	if err != nil {
		st.lastErr.Store(err.Error())
		return nil, n
	}
	subs := make([]*sub, n)
	var failed atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < cfg.connectConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if s, err := connectOne(dialers[i%len(dialers)], cfg, r, i, channels(i), own); err != nil {
					failed.Add(1)
					st.lastErr.Store(err.Error())
				} else {
					subs[i] = s
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			out = append(out, s)
		}
	}
	return out, int(failed.Load())
}

func connectOne(d *websocket.Dialer, cfg *config, r *reactor, i int, channels []string, own func(int) string) (*sub, error) {
	c, err := dial(d, wsURL(cfg.url, fmt.Sprintf("sub-%d", i)), 3)
	if err != nil {
		return nil, err
	}
	fd, err := detach(c)
	if err != nil {
		return nil, err
	}
	s := &sub{idx: i, fd: fd, lastSeq: -1}
	if own != nil {
		s.channel = own(i)
	}
	if err := r.add(s); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	for _, f := range subscribeFrames(cfg.proto, channels) {
		if err := s.writeFrame(0x1, f); err != nil {
			r.remove(s, false)
			return nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	return s, nil
}

func (s *sub) handle(frame []byte, now int64, st *stats) {
	n := scanFrame(frame, func(t, seq int64) {
		if !st.measuring.Load() {
			return
		}
		if r := int64(st.received.Add(1)); st.waiting.Load() && r >= st.wakeAt.Load() {
			if st.waiting.CompareAndSwap(true, false) {
				select {
				case st.wake <- struct{}{}:
				default:
				}
			}
		}
		lat := now - t
		if lat < 0 {
			lat = 0
		}
		st.lat.record(uint64(lat / 1000))
		if seq >= 0 && seq < int64(len(st.perSeq)) {
			st.perSeq[seq].Add(1)
		}
		if st.checkOrder && seq >= 0 {
			if seq <= s.lastSeq {
				st.outOfOrder.Add(1)
			}
			s.lastSeq = seq
		}
	})
	if n > 0 {
		st.lastRecvNs.Store(now)
		return
	}
	if st.pong && isCentrifugoPing(frame) {
		_ = s.writeFrame(0x1, pingFrame)
		return
	}
	switch {
	case bytes.Contains(frame, evWarmOwn):
		if s.warmOwn.CompareAndSwap(false, true) {
			st.warmOwn.Add(1)
		}
	case bytes.Contains(frame, evWarm), bytes.Contains(frame, evWarmShared):
		if s.warm.CompareAndSwap(false, true) {
			st.warm.Add(1)
		}
	case bytes.Contains(frame, typeError):
		st.errorFrames.Add(1)
		st.lastErr.Store("error frame: " + string(frame))
	default:
		st.otherFrames.Add(1)
	}
}

func closeAll(r *reactor, subs []*sub) {
	for _, s := range subs {
		if !s.closed.Load() {
			_ = s.writeFrame(0x8, []byte{0x03, 0xe8}) // 1000: normal closure
			r.remove(s, false)
		}
	}
}
