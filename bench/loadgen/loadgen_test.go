package main

import (
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
