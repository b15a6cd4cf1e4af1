package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP publishers that keep several requests in flight, written on raw keep-alive
// connections: net/http's client neither pipelines nor lets one goroutine keep eight
// requests going without eight goroutines and their scheduling in the measurement.
//
//   - http-pool: -http-conns keep-alive connections (default 8), each with one request in
//     flight, as a backend with a small connection pool publishes.
//   - http-pipe: one keep-alive connection with up to -pipeline-depth requests written
//     before their answers come back (HTTP/1.1 pipelining; answers arrive in order).
//
// Either way send returns once the request is handed to a connection, so the fan-out
// window (deliveries outstanding), not the answer, paces the publisher.

type rawConn struct {
	conn net.Conn
	br   *bufio.Reader
	head []byte // request line and headers up to Content-Length's value
}

func dialRaw(target string) (*rawConn, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// is supported for pooled and pipelined publishing", target)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{conn: c, br: bufio.NewReaderSize(c, 16<<10), head: requestHead(u)}, nil
}

func requestHead(u *url.URL) []byte {
	path := u.RequestURI()
	return []byte("POST " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: application/json\r\nContent-Length: ")
}

// appendRequest appends one whole POST with body to b.
func (c *rawConn) appendRequest(b, body []byte) []byte {
	b = append(b, c.head...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

func (c *rawConn) write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.conn.Write(b)
	return err
}

// readAnswer reads one response and tells whether it is a refusal (with its text).
func (c *rawConn) readAnswer() (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return "", err
	}
	if publishFailed(resp.StatusCode, body) {
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body))), nil
	}
	if resp.Close {
		return "", errors.New("the server closed the keep-alive connection")
	}
	return "", nil
}

// asyncErrors is what the pool and the pipeline share: refusals are counted (like error
// frames on the WebSocket), a broken connection ends the run at the next send.
type asyncErrors struct {
	refused atomic.Uint64
	fatal   atomic.Value // error
	dead    chan struct{}
	once    sync.Once
	st      *stats
}

func newAsyncErrors(st *stats) *asyncErrors { return &asyncErrors{dead: make(chan struct{}), st: st} }

func (a *asyncErrors) refuse(msg string) {
	a.refused.Add(1)
	a.st.lastErr.Store("publish refused: " + msg)
}

func (a *asyncErrors) die(err error) {
	a.once.Do(func() {
		a.fatal.Store(err)
		close(a.dead)
	})
}

func (a *asyncErrors) err() error {
	if v, ok := a.fatal.Load().(error); ok {
		return v
	}
	return nil
}

type poolPublisher struct {
	*asyncErrors
	proto string
	conns []*rawConn
	jobs  chan []byte
	wg    sync.WaitGroup
}

func newPoolPublisher(cfg *config, st *stats) (*poolPublisher, error) {
	u, err := publishURL(cfg)
	if err != nil {
		return nil, err
	}
	n := max(cfg.httpConns, 1)
	p := &poolPublisher{asyncErrors: newAsyncErrors(st), proto: cfg.proto, jobs: make(chan []byte)}
	for i := 0; i < n; i++ {
		c, err := dialRaw(u)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("publisher dial: %w", err)
		}
		p.conns = append(p.conns, c)
	}
	for _, c := range p.conns {
		p.wg.Add(1)
		go p.worker(c)
	}
	return p, nil
}

func (p *poolPublisher) worker(c *rawConn) {
	defer p.wg.Done()
	var req []byte
	for body := range p.jobs {
		req = c.appendRequest(req[:0], body)
		if err := c.write(req); err != nil {
			p.die(err)
			return
		}
		msg, err := c.readAnswer()
		if err != nil {
			p.die(err)
			return
		}
		if msg != "" {
			p.refuse(msg)
		}
	}
}

// send hands the request to the first idle connection (the unbuffered channel blocks while
// all of them wait for an answer).
func (p *poolPublisher) send(channel, event string, payload []byte) error {
	body := httpPublishBody(nil, p.proto, channel, event, payload)
	select {
	case p.jobs <- body:
		return nil
	case <-p.dead:
		return p.err()
	}
}

func (p *poolPublisher) errorCount() uint64 { return p.refused.Load() }

func (p *poolPublisher) close() {
	if p.jobs != nil {
		close(p.jobs)
		p.jobs = nil
	}
	for _, c := range p.conns {
		_ = c.conn.Close()
	}
	p.wg.Wait()
}

type pipePublisher struct {
	*asyncErrors
	proto string
	c     *rawConn
	slots chan struct{} // one token per request written and not yet answered
	body  []byte
	req   []byte
}

func newPipePublisher(cfg *config, st *stats) (*pipePublisher, error) {
	u, err := publishURL(cfg)
	if err != nil {
		return nil, err
	}
	c, err := dialRaw(u)
	if err != nil {
		return nil, fmt.Errorf("publisher dial: %w", err)
	}
	p := &pipePublisher{
		asyncErrors: newAsyncErrors(st),
		proto:       cfg.proto,
		c:           c,
		slots:       make(chan struct{}, max(cfg.pipelineDepth, 1)),
	}
	go p.reader()
	return p, nil
}

func (p *pipePublisher) reader() {
	for {
		msg, err := p.c.readAnswer()
		if err != nil {
			p.die(err)
			return
		}
		if msg != "" {
			p.refuse(msg)
		}
		select {
		case <-p.slots:
		default:
			p.die(errors.New("an answer to a request that was never sent"))
			return
		}
	}
}

func (p *pipePublisher) send(channel, event string, payload []byte) error {
	select {
	case p.slots <- struct{}{}:
	case <-p.dead:
		return p.err()
	}
	p.body = httpPublishBody(p.body[:0], p.proto, channel, event, payload)
	p.req = p.c.appendRequest(p.req[:0], p.body)
	if err := p.c.write(p.req); err != nil {
		p.die(err)
		return err
	}
	return nil
}

func (p *pipePublisher) errorCount() uint64 { return p.refused.Load() }

func (p *pipePublisher) close() { _ = p.c.conn.Close() }
