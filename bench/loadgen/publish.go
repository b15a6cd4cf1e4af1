package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// publisher sends one broadcast at a time; send blocks until the transport
// takes it (TCP backpressure for WebSocket, the response for HTTP, a free
// connection or pipeline slot for the HTTP pool and pipeline).
type publisher interface {
	send(channel, event string, payload []byte) error
	// errorCount is how many publishes the server refused (error frames or answers).
	errorCount() uint64
	close()
}

type wsPublisher struct {
	conn   *websocket.Conn
	proto  string
	id     uint64
	buf    []byte
	mu     sync.Mutex // the send loop and the pong of the reader goroutine both write
	errors *atomic.Uint64
}

func newWSPublisher(cfg *config, st *stats) (*wsPublisher, error) {
	d := newDialer(4096)
	d.WriteBufferSize = 16384
	d.WriteBufferPool = nil
	c, err := dial(d, wsURL(cfg.pubURL, "bench-publisher"), 3)
	if err != nil {
		return nil, fmt.Errorf("publisher dial: %w", err)
	}
	p := &wsPublisher{conn: c, proto: cfg.proto, id: 1, errors: new(atomic.Uint64)}
	if cfg.proto == protoCentrifugo {
		if err := c.WriteMessage(websocket.TextMessage, subscribeFrames(cfg.proto, nil)[0]); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("publisher connect: %w", err)
		}
	}
	// Drain whatever the gateway sends the publisher (error frames, control
	// frames, Centrifugo's replies) so its pings are answered and its buffers do not fill.
	go func() {
		for {
			_, r, err := c.NextReader()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(r)
			if bytes.Contains(b, typeError) {
				p.errors.Add(1)
				st.lastErr.Store("publisher got: " + string(b))
			}
			if cfg.proto == protoCentrifugo && isCentrifugoPing(b) {
				p.mu.Lock()
				_ = c.WriteMessage(websocket.TextMessage, pingFrame)
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

func (p *wsPublisher) send(channel, event string, payload []byte) error {
	p.id++
	b := wsPublishFrame(p.buf[:0], p.proto, p.id, channel, event, payload)
	p.buf = b
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return p.conn.WriteMessage(websocket.TextMessage, b)
}

func (p *wsPublisher) errorCount() uint64 { return p.errors.Load() }

func (p *wsPublisher) close() { _ = p.conn.Close() }

type httpPublisher struct {
	url    string
	proto  string
	client *http.Client
	buf    []byte
}

func publishURL(cfg *config) (string, error) {
	if cfg.httpURL != "" {
		return cfg.httpURL, nil
	}
	return httpPublishURL(cfg.pubURL, cfg.proto)
}

func newHTTPPublisher(cfg *config) (*httpPublisher, error) {
	u, err := publishURL(cfg)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	return &httpPublisher{url: u, proto: cfg.proto, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

func (p *httpPublisher) send(channel, event string, payload []byte) error {
	b := httpPublishBody(p.buf[:0], p.proto, channel, event, payload)
	p.buf = b
	resp, err := p.client.Post(p.url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if publishFailed(resp.StatusCode, body) {
		return fmt.Errorf("POST %s: HTTP %d: %s", p.url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

func (p *httpPublisher) errorCount() uint64 { return 0 } // an error ends the run instead

func (p *httpPublisher) close() { p.client.CloseIdleConnections() }

func newPublisher(cfg *config, st *stats) (publisher, error) {
	switch cfg.publish {
	case "ws":
		return newWSPublisher(cfg, st)
	case "http":
		return newHTTPPublisher(cfg)
	case "http-pool":
		return newPoolPublisher(cfg, st)
	case "http-pipe":
		return newPipePublisher(cfg, st)
	}
	return nil, fmt.Errorf("unknown -publish %q (ws, http, http-pool or http-pipe)", cfg.publish)
}

// payloadBuilder makes {"t":<ns>,"s":<seq>,"p":"xxx"} padded to about size bytes.
type payloadBuilder struct {
	pad string
	buf []byte
}

func newPayloadBuilder(size int) *payloadBuilder {
	// {"t":1700000000000000000,"s":1234567,"p":""} is about 45 bytes.
	n := size - 45
	if n < 0 {
		n = 0
	}
	return &payloadBuilder{pad: strings.Repeat("x", n)}
}

func (b *payloadBuilder) build(seq int64) []byte {
	p := b.buf[:0]
	p = append(p, `{"t":`...)
	p = strconv.AppendInt(p, time.Now().UnixNano(), 10)
	p = append(p, `,"s":`...)
	p = strconv.AppendInt(p, seq, 10)
	p = append(p, `,"p":"`...)
	p = append(p, b.pad...)
	p = append(p, `"}`...)
	b.buf = p
	return p
}

// appendEvent appends one event object (head, then channel, event and the raw payload) to b;
// the WebSocket frame and the HTTP body differ only in their head.
func appendEvent(b []byte, head, channel, event string, payload []byte) []byte {
	b = append(b, head...)
	b = append(b, quote(channel)...)
	b = append(b, `,"event":`...)
	b = append(b, quote(event)...)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}
