package main

import (
	"bytes"
	"math"
	"testing"
)

func TestScanFrame(t *testing.T) {
	cases := []struct {
		frame string
		want  [][2]int64
	}{
		{`{"type":"broadcast","channel":"c","event":"m","payload":{"t":123,"s":7,"p":"xx"},"user_id":"u","ts":99}`, [][2]int64{{123, 7}}},
		{`{"payload": {"t": 5, "s": 6}, "ts": 1}`, [][2]int64{{5, 6}}},
		{`{"payload":{"s":9,"t":8}}`, [][2]int64{{8, 9}}},
		{"{\"payload\":{\"t\":1,\"s\":2}}\n{\"payload\":{\"t\":3,\"s\":4}}", [][2]int64{{1, 2}, {3, 4}}},
		{`{"type":"broadcast","event":"warmup","payload":{"w":1},"ts":5}`, nil},
	}
	for _, c := range cases {
		var got [][2]int64
		n := scanFrame([]byte(c.frame), func(ts, seq int64) { got = append(got, [2]int64{ts, seq}) })
		if n != len(c.want) || len(got) != len(c.want) {
			t.Fatalf("%s: got %v, want %v", c.frame, got, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%s: got %v, want %v", c.frame, got, c.want)
			}
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h hist
	for v := uint64(1); v <= 100000; v++ {
		h.record(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		got, want := h.quantile(q), q*100000
		if math.Abs(got-want)/want > 0.01 {
			t.Errorf("q%.2f = %.0f, want about %.0f", q, got, want)
		}
	}
	if h.maxUs.Load() != 100000 {
		t.Errorf("max = %d", h.maxUs.Load())
	}
}

func TestBucketsRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 255, 256, 1000, 123456, 1 << 30} {
		got := valueOf(bucketOf(v))
		if math.Abs(got-float64(v)) > float64(v)/100+1 {
			t.Errorf("value %d lands in a bucket around %.1f", v, got)
		}
	}
}

func TestPayloadSize(t *testing.T) {
	p := newPayloadBuilder(100).build(1234567)
	if len(p) < 90 || len(p) > 110 {
		t.Errorf("payload is %d bytes: %s", len(p), p)
	}
}

func TestCentrifugoFrames(t *testing.T) {
	got := subscribeFrames(protoCentrifugo, []string{"room", "own-1"})
	want := []string{`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":"room"}}`, `{"id":3,"subscribe":{"channel":"own-1"}}`}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("frame %d: %s, want %s", i, got[i], want[i])
		}
	}
	if got := subscribeFrames(protoRealtime, []string{"room"}); len(got) != 1 || string(got[0]) != `{"type":"subscribe","channel":"room","listen":["broadcast"]}` {
		t.Errorf("realtime subscribe: %q", got)
	}
	payload := []byte(`{"t":5,"s":6,"p":"x"}`)
	if f := string(wsPublishFrame(nil, protoCentrifugo, 7, "room", "m", payload)); f != `{"id":7,"publish":{"channel":"room","data":{"t":5,"s":6,"p":"x"}}}` {
		t.Errorf("centrifugo publish frame: %s", f)
	}
	if f := string(wsPublishFrame(nil, protoRealtime, 7, "room", "m", payload)); f != `{"type":"broadcast","channel":"room","event":"m","payload":{"t":5,"s":6,"p":"x"}}` {
		t.Errorf("realtime publish frame: %s", f)
	}
	if b := string(httpPublishBody(nil, protoCentrifugo, "room", "m", payload)); b != `{"channel":"room","data":{"t":5,"s":6,"p":"x"}}` {
		t.Errorf("centrifugo HTTP body: %s", b)
	}
	if b := string(httpPublishBody(nil, protoRealtime, "room", "warmup", []byte(`{"w":1}`))); b != `{"channel":"room","event":"warmup","payload":{"w":1}}` {
		t.Errorf("realtime HTTP body: %s", b)
	}
}

// A Centrifugo subscriber must tell a warm-up and a measured message apart by the data
// alone, as the realtime protocol's event field does.
func TestCentrifugoPushIsScanned(t *testing.T) {
	warm := `{"push":{"channel":"room","pub":{"data":` + string(centrifugoData(nil, "warmup", []byte(`{"w":1}`))) + `}}}`
	if !bytes.Contains([]byte(warm), evWarm) || scanFrame([]byte(warm), func(int64, int64) {}) != 0 {
		t.Errorf("warm-up push not recognised as one: %s", warm)
	}
	if bytes.Contains([]byte(warm), evWarmShared) {
		t.Errorf("a plain warm-up reads as a shared one: %s", warm)
	}
	m := `{"push":{"channel":"room","pub":{"data":` + string(centrifugoData(nil, "m", []byte(`{"t":11,"s":3,"p":"xx"}`))) + `,"offset":4}}}` + "\n" +
		`{"push":{"channel":"room","pub":{"data":{"t":12,"s":4,"p":"xx"}}}}`
	var got [][2]int64
	scanFrame([]byte(m), func(ts, seq int64) { got = append(got, [2]int64{ts, seq}) })
	if len(got) != 2 || got[0] != [2]int64{11, 3} || got[1] != [2]int64{12, 4} {
		t.Errorf("batched pushes scanned as %v", got)
	}
}

func TestCentrifugoPing(t *testing.T) {
	for frame, want := range map[string]bool{
		`{}`:                    true,
		"{}\n":                  true,
		`{"id":1,"connect":{}}`: false,
		"{\"push\":{}}\n{}":     true,
		`{"push":{"pub":{}}}`:   false,
		"":                      false,
		"{\"id\":2,\"subscribe\":{}}\n{\"push\":{}}": false,
	} {
		if got := isCentrifugoPing([]byte(frame)); got != want {
			t.Errorf("isCentrifugoPing(%q) = %v, want %v", frame, got, want)
		}
	}
}

func TestHTTPPublishURL(t *testing.T) {
	for _, c := range []struct{ ws, proto, want string }{
		{"ws://127.0.0.1:8000/ws?x=1", protoRealtime, "http://127.0.0.1:8000/api/event"},
		{"ws://127.0.0.1:8000/connection/websocket", protoCentrifugo, "http://127.0.0.1:8000/api/publish"},
		{"wss://h/ws", protoRealtime, "https://h/api/event"},
	} {
		if got, err := httpPublishURL(c.ws, c.proto); err != nil || got != c.want {
			t.Errorf("httpPublishURL(%s, %s) = %s, %v; want %s", c.ws, c.proto, got, err, c.want)
		}
	}
	if publishFailed(200, []byte(`{"result":{}}`)) || !publishFailed(200, []byte(`{"error":{"code":102}}`)) ||
		!publishFailed(413, []byte(`{"error":"too large"}`)) || publishFailed(200, []byte(`{"status":"ok"}`)) {
		t.Error("publishFailed misreads an answer")
	}
}
