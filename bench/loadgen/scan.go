package main

import "bytes"

// The measured payload is {"t":<send unix ns>,"s":<seq>,"p":"..."}. Instead of
// decoding the whole frame, find each "t": and its "s": with a byte scan. A
// frame may carry several JSON objects separated by '\n'; each yields one pair.
// The gateway's own fields (type, channel, event, payload, user_id, ts) never
// spell "t": or "s":, so the scan only matches our payload.
var (
	keyT = []byte(`"t":`)
	keyS = []byte(`"s":`)
)

// parseInt reads an optionally space-prefixed non-negative integer at b[i:].
func parseInt(b []byte, i int) (int64, int, bool) {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start := i
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	return v, i, i > start
}

// scanFrame calls fn(t, s) for every measured message in frame and returns
// how many it found.
func scanFrame(frame []byte, fn func(t, s int64)) int {
	n := 0
	i := 0
	for i < len(frame) {
		j := bytes.Index(frame[i:], keyT)
		if j < 0 {
			break
		}
		tPos := i + j
		t, end, ok := parseInt(frame, tPos+len(keyT))
		if !ok {
			i = tPos + len(keyT)
			continue
		}
		var s int64 = -1
		// "s" normally follows "t"; look backwards too in case a re-encoder
		// reordered the payload's keys.
		if k := bytes.Index(frame[end:], keyS); k >= 0 && k < 256 {
			if v, _, ok := parseInt(frame, end+k+len(keyS)); ok {
				s = v
			}
		} else {
			lo := max(tPos-256, 0)
			if k := bytes.LastIndex(frame[lo:tPos], keyS); k >= 0 {
				if v, _, ok := parseInt(frame, lo+k+len(keyS)); ok {
					s = v
				}
			}
		}
		fn(t, s)
		n++
		i = end
	}
	return n
}
