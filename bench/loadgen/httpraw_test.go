package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A server that records each publish body and how many requests were in flight at once.
type recorder struct {
	mu       sync.Mutex
	bodies   []map[string]any
	inFlight atomic.Int32
	peak     atomic.Int32
	refuse   bool
	gate     chan struct{} // when set, no request is answered before it closes
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rec.gate != nil {
		<-rec.gate
	}
	n := rec.inFlight.Add(1)
	defer rec.inFlight.Add(-1)
	for {
		p := rec.peak.Load()
		if n <= p || rec.peak.CompareAndSwap(p, n) {
			break
		}
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.URL.Path != "/api/publish" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	time.Sleep(2 * time.Millisecond) // long enough for the pool's requests to overlap
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, body)
	rec.mu.Unlock()
	if rec.refuse {
		_, _ = w.Write([]byte(`{"error":{"code":102,"message":"unknown channel"}}`))
		return
	}
	_, _ = w.Write([]byte(`{"result":{}}`))
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.bodies)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func publishMany(t *testing.T, publish string, rec *recorder, n int) publisher {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := &config{publish: publish, proto: protoCentrifugo, pubURL: "ws" + srv.URL[4:] + "/connection/websocket", httpConns: 8, pipelineDepth: 16}
	pub, err := newPublisher(cfg, &stats{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.close)
	for i := 0; i < n; i++ {
		if err := pub.send("room", "m", []byte(`{"t":1,"s":`+string(rune('0'+i%10))+`}`)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	waitFor(t, func() bool { return rec.count() == n })
	return pub
}

func TestPoolPublisherKeepsEightInFlight(t *testing.T) {
	rec := &recorder{}
	pub := publishMany(t, "http-pool", rec, 200)
	if pub.errorCount() != 0 {
		t.Errorf("%d refusals", pub.errorCount())
	}
	if p := rec.peak.Load(); p < 2 || p > 8 {
		t.Errorf("at most %d requests in flight; want 2..8 (8 connections)", p)
	}
	if ch := rec.bodies[0]["channel"]; ch != "room" {
		t.Errorf("body %v", rec.bodies[0])
	}
}

func TestPipePublisherSendsAheadOfAnswers(t *testing.T) {
	rec := &recorder{}
	pub := publishMany(t, "http-pipe", rec, 200).(*pipePublisher)
	// Every answer was read: all slots come back.
	waitFor(t, func() bool { return len(pub.slots) == 0 })
	if pub.errorCount() != 0 || pub.err() != nil {
		t.Errorf("%d refusals, %v", pub.errorCount(), pub.err())
	}

	// With the server holding every answer back, a whole pipeline's worth of sends return.
	gated := &recorder{gate: make(chan struct{})}
	srv := httptest.NewServer(gated)
	defer srv.Close()
	cfg := &config{publish: "http-pipe", proto: protoRealtime, httpURL: srv.URL + "/api/publish", pipelineDepth: 16}
	p, err := newPipePublisher(cfg, &stats{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	sent := make(chan error, 1)
	go func() {
		for i := 0; i < 16; i++ {
			if err := p.send("room", "m", []byte(`{}`)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(gated.gate)
		t.Fatal("a send waited for an answer: the publisher does not pipeline")
	}
	if gated.count() != 0 || len(p.slots) != 16 {
		t.Fatalf("%d answered, %d in flight before the gate opened", gated.count(), len(p.slots))
	}
	close(gated.gate)
	waitFor(t, func() bool { return gated.count() == 16 && len(p.slots) == 0 })
}

func TestAsyncPublishersCountRefusals(t *testing.T) {
	for _, mode := range []string{"http-pool", "http-pipe"} {
		rec := &recorder{refuse: true}
		pub := publishMany(t, mode, rec, 20)
		waitFor(t, func() bool { return pub.errorCount() == 20 })
	}
}
