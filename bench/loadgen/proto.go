package main

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
)

// The wire protocols the loadgen speaks. "realtime" is realtime-mq's (and the Go seed's);
// "centrifugo" is Centrifugo's JSON protocol, so that the same scenarios can be run against
// it as a peer. Only what the scenarios need: connect, subscribe, publish, pong.

const (
	protoRealtime   = "realtime"
	protoCentrifugo = "centrifugo"
)

func checkProto(p string) error {
	if p != protoRealtime && p != protoCentrifugo {
		return fmt.Errorf("unknown -proto %q (realtime or centrifugo)", p)
	}
	return nil
}

// subscribeFrames are the frames a subscriber sends right after the handshake, in order.
// Centrifugo handles a connection's commands in order, so subscribing need not wait for
// the connect reply.
func subscribeFrames(proto string, channels []string) [][]byte {
	var out [][]byte
	if proto == protoCentrifugo {
		out = append(out, []byte(`{"id":1,"connect":{}}`))
		for i, ch := range channels {
			out = append(out, []byte(`{"id":`+strconv.Itoa(i+2)+`,"subscribe":{"channel":`+quote(ch)+`}}`))
		}
		return out
	}
	for _, ch := range channels {
		out = append(out, subscribeFrame(ch))
	}
	return out
}

// centrifugoData is the publication's data: the measured payload as it is, so both
// protocols carry the same ~100 bytes; a warm-up has no event field to be told by, so its
// data names the event ("warmup" in quotes is what the subscribers look for).
func centrifugoData(b []byte, event string, payload []byte) []byte {
	if event == "m" {
		return append(b, payload...)
	}
	b = append(b, `{"e":`...)
	b = append(b, quote(event)...)
	return append(b, '}')
}

// wsPublishFrame appends one client publish command to b.
func wsPublishFrame(b []byte, proto string, id uint64, channel, event string, payload []byte) []byte {
	if proto == protoCentrifugo {
		b = append(b, `{"id":`...)
		b = strconv.AppendUint(b, id, 10)
		b = append(b, `,"publish":{"channel":`...)
		b = append(b, quote(channel)...)
		b = append(b, `,"data":`...)
		b = centrifugoData(b, event, payload)
		return append(b, `}}`...)
	}
	return appendEvent(b, `{"type":"broadcast","channel":`, channel, event, payload)
}

// httpPublishBody appends the body of one HTTP publish request to b.
func httpPublishBody(b []byte, proto, channel, event string, payload []byte) []byte {
	if proto == protoCentrifugo {
		b = append(b, `{"channel":`...)
		b = append(b, quote(channel)...)
		b = append(b, `,"data":`...)
		b = centrifugoData(b, event, payload)
		return append(b, '}')
	}
	return appendEvent(b, `{"channel":`, channel, event, payload)
}

// httpPublishURL derives the HTTP publish endpoint from the publisher's WebSocket URL:
// /api/event on realtime-mq and the seed, /api/publish (the server API) on Centrifugo.
func httpPublishURL(ws, proto string) (string, error) {
	u, err := url.Parse(ws)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = "/api/event"
	if proto == protoCentrifugo {
		u.Path = "/api/publish"
	}
	u.RawQuery = ""
	return u.String(), nil
}

// publishFailed tells whether an HTTP publish answer is a failure. Centrifugo's server API
// answers 200 with {"error":{...}} in the body; realtime-mq answers 4xx/5xx with
// {"error": "..."}.
func publishFailed(status int, body []byte) bool {
	return status != 200 || bytes.Contains(body, typeError)
}

var pingFrame = []byte(`{}`)

// isCentrifugoPing tells whether a frame carries Centrifugo's ping, an empty command ("{}"),
// alone or as one line of a batch. The client must answer "{}" or be disconnected.
func isCentrifugoPing(frame []byte) bool {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		if bytes.Equal(bytes.TrimSpace(line), pingFrame) {
			return true
		}
	}
	return false
}
