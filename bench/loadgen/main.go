// Command loadgen drives a realtime-mq style WebSocket gateway and prints one
// JSON object with the figures. Modes: fanout, fixed, channels, idle.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	mode               string
	url                string
	pubURL             string
	httpURL            string
	publish            string
	proto              string
	httpConns          int
	pipelineDepth      int
	subs               int
	channel            string
	duration           time.Duration
	rate               float64
	window             int
	payloadSize        int
	drain              time.Duration
	drainIdle          time.Duration
	warmup             time.Duration
	timeout            time.Duration
	hold               time.Duration
	connectConcurrency int
	sourceIPs          []string
	groupSize          int
	seed               int64
	serverPids         []int
	serverCPUs         map[string]bool
}

type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type result struct {
	Mode           string     `json:"mode"`
	Publish        string     `json:"publish"`
	Proto          string     `json:"proto"`
	Subscribers    int        `json:"subscribers"`
	Connected      int        `json:"connected"`
	ConnectFailed  int        `json:"connect_failed"`
	Ready          int        `json:"ready"`
	ConnectS       float64    `json:"connect_s"`
	WarmupS        float64    `json:"warmup_s"`
	WarmupSent     int        `json:"warmup_sent"`
	Sent           int64      `json:"sent"`
	PublishS       float64    `json:"publish_s"`
	PublishRate    float64    `json:"publish_rate"`
	Expected       int64      `json:"expected"`
	Received       int64      `json:"received"`
	Lost           int64      `json:"lost"`
	LostPct        float64    `json:"lost_pct"`
	OutOfOrder     int64      `json:"out_of_order"`
	ShortSeqs      int64      `json:"short_broadcasts"`
	Missing        [][3]int64 `json:"short_first,omitempty"`
	DeliveriesPerS float64    `json:"deliveries_per_s"`
	ElapsedS       float64    `json:"elapsed_s"`
	DrainS         float64    `json:"drain_s"`
	DrainEnd       string     `json:"drain_end"`
	WindowStalls   int64      `json:"window_stalls"`
	LatencyMs      *latency   `json:"latency_ms,omitempty"`
	CPUPct         float64    `json:"loadgen_cpu_pct"`
	CPUPctTotal    float64    `json:"loadgen_cpu_pct_total"`
	ServerCPUPct   *float64   `json:"server_cpu_pct,omitempty"`
	CoreBusyPct    *float64   `json:"server_core_busy_pct,omitempty"`
	CoreSoftirqPct *float64   `json:"server_core_softirq_pct,omitempty"`
	CoreOtherPct   *float64   `json:"server_core_other_pct,omitempty"`
	ErrorFrames    int64      `json:"error_frames"`
	PubErrors      int64      `json:"pub_errors"`
	Disconnects    int64      `json:"disconnects"`
	OtherFrames    int64      `json:"other_frames"`
	HeldS          float64    `json:"held_s,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	Error          string     `json:"error,omitempty"`
}

// Broadcasts beyond this sequence number are counted but not checked one by one.
const maxTrackedSeq = 1 << 20

var outMu sync.Mutex

func emit(v any) {
	outMu.Lock()
	defer outMu.Unlock()
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func fail(format string, a ...any) {
	emit(map[string]string{"error": fmt.Sprintf(format, a...)})
	os.Exit(2)
}

func cpuNs() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// procCPUNs sums user+system CPU time of processes from /proc/<pid>/stat.
func procCPUNs(pids []int) int64 {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the ")" that ends comm: utime and stime are the 12th and 13th.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return ticks * 1e9 / 100 // USER_HZ is 100 on Linux
}

type ticks struct{ busy, softirq int64 }

// coreTicks sums non-idle and softirq time of the named CPUs from /proc/stat.
func coreTicks(cpus map[string]bool) ticks {
	var t ticks
	if len(cpus) == 0 {
		return t
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !cpus[f[0]] {
			continue
		}
		// user nice system idle iowait irq softirq steal
		for i, v := range f[1:9] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 {
				t.busy += n
			}
			if i == 6 {
				t.softirq += n
			}
		}
	}
	return t
}

// raiseNofile lifts the open-files soft limit to the hard one and returns it.
func raiseNofile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 65536
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
		}
	}
	return r.Cur
}

func main() {
	cfg := &config{}
	flag.StringVar(&cfg.mode, "mode", "fanout", "fanout | fixed | channels | idle")
	flag.StringVar(&cfg.url, "url", "ws://127.0.0.1:8000/ws", "WebSocket URL the subscribers connect to")
	flag.StringVar(&cfg.pubURL, "pub-url", "", "WebSocket URL the publisher uses (default: -url); another instance tests the cross-instance path")
	flag.StringVar(&cfg.httpURL, "http-url", "", "HTTP publish URL for the http publishers (default: derived from -pub-url, path /api/event, or /api/publish for centrifugo)")
	flag.StringVar(&cfg.publish, "publish", "ws", "ws | http (one request at a time) | http-pool (-http-conns keep-alive connections) | http-pipe (one pipelined connection)")
	flag.StringVar(&cfg.proto, "proto", protoRealtime, "wire protocol: realtime (realtime-mq and the Go seed) | centrifugo (Centrifugo's JSON protocol)")
	flag.IntVar(&cfg.httpConns, "http-conns", 8, "http-pool: keep-alive connections, one request in flight on each")
	flag.IntVar(&cfg.pipelineDepth, "pipeline-depth", 64, "http-pipe: most requests written and not yet answered")
	flag.IntVar(&cfg.subs, "subs", 0, "subscriber connections (default 1000; 10000 for channels and idle)")
	flag.StringVar(&cfg.channel, "channel", "bench", "channel name (shared channel in channels mode)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "publish duration")
	flag.Float64Var(&cfg.rate, "rate", 0, "broadcasts/s for fixed and channels (default 20 and 4)")
	flag.IntVar(&cfg.window, "window", 0, "fanout: at most this many broadcasts' worth of deliveries outstanding (0: only TCP backpressure)")
	flag.IntVar(&cfg.payloadSize, "payload-size", 100, "approximate payload JSON size in bytes")
	flag.DurationVar(&cfg.drain, "drain", 10*time.Second, "longest wait for outstanding deliveries after publishing")
	flag.DurationVar(&cfg.drainIdle, "drain-idle", 2*time.Second, "stop draining after this long without a delivery")
	flag.DurationVar(&cfg.warmup, "warmup", 30*time.Second, "longest time to get every subscription live")
	flag.DurationVar(&cfg.timeout, "timeout", 180*time.Second, "hard limit on the whole run")
	flag.DurationVar(&cfg.hold, "hold", 120*time.Second, "idle: longest hold before exiting (stdin EOF or a signal end it sooner)")
	flag.IntVar(&cfg.connectConcurrency, "connect-concurrency", 64, "dials in flight")
	flag.Int64Var(&cfg.seed, "seed", 1, "random seed (channels mode)")
	sourceIPs := flag.String("source-ips", "", "comma-separated local addresses the subscribers dial from, in turn (each gives about 28k ephemeral ports; 100k connections need four or more, e.g. 127.0.0.1,...,127.0.0.5)")
	flag.IntVar(&cfg.groupSize, "group-size", 0, "channels: put the subscribers on channels of this many each (group-0, group-1, ...) instead of own + shared; broadcasts go to a random group")
	serverPids := flag.String("server-pids", "", "comma-separated pids whose CPU use over the load window is reported as server_cpu_pct")
	serverCPUs := flag.String("server-cpus", "", "comma-separated CPU numbers the server is pinned to: report how busy they were and with what")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here (for tuning the loadgen)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail("cpuprofile: %v", err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	for _, f := range strings.Split(*serverPids, ",") {
		if pid, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			cfg.serverPids = append(cfg.serverPids, pid)
		}
	}
	for _, f := range strings.Split(*sourceIPs, ",") {
		if f = strings.TrimSpace(f); f != "" {
			cfg.sourceIPs = append(cfg.sourceIPs, f)
		}
	}
	cfg.serverCPUs = map[string]bool{}
	for _, f := range strings.Split(*serverCPUs, ",") {
		if f = strings.TrimSpace(f); f != "" {
			cfg.serverCPUs["cpu"+f] = true
		}
	}
	if err := checkProto(cfg.proto); err != nil {
		fail("%v", err)
	}
	if cfg.pubURL == "" {
		cfg.pubURL = cfg.url
	}
	if cfg.subs == 0 {
		cfg.subs = 1000
		if cfg.mode == "channels" || cfg.mode == "idle" {
			cfg.subs = 10000
		}
	}
	if cfg.rate == 0 {
		cfg.rate = 20
		if cfg.mode == "channels" {
			cfg.rate = 4
		}
	}
	nofile := raiseNofile()
	// Pinned to one CPU, Go would run one P; the reactor's blocking epoll_wait
	// would then hold it until sysmon hands it over, delaying the publisher.
	// A second P lets the kernel switch threads at once.
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}

	st := &stats{
		// Publishes racing on several connections have no order to check.
		checkOrder: (cfg.mode == "fanout" || cfg.mode == "fixed") && cfg.publish != "http-pool",
		pong:       cfg.proto == protoCentrifugo,
		wake:       make(chan struct{}, 1),
		perSeq:     make([]atomic.Int32, maxTrackedSeq),
	}
	res := &result{Mode: cfg.mode, Publish: cfg.publish, Proto: cfg.proto, Subscribers: cfg.subs}
	// The hard timeout prints what is known so far and exits non-zero.
	time.AfterFunc(cfg.timeout, func() {
		res.Error = fmt.Sprintf("hard timeout after %s", cfg.timeout)
		fillCounters(res, st)
		emit(res)
		os.Exit(3)
	})

	r, err := newReactor(st, int(min(nofile, 1<<20)))
	if err != nil {
		fail("%v", err)
	}
	switch cfg.mode {
	case "fanout", "fixed", "idle":
		runSingle(cfg, st, r, res)
	case "channels":
		if cfg.groupSize > 0 {
			runGroups(cfg, st, r, res)
		} else {
			runChannels(cfg, st, r, res)
		}
	default:
		fail("unknown -mode %q", cfg.mode)
	}
	emit(res)
	if res.Error != "" {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func fillCounters(res *result, st *stats) {
	res.ErrorFrames = int64(st.errorFrames.Load())
	res.Disconnects = int64(st.disconnects.Load())
	res.OtherFrames = int64(st.otherFrames.Load())
	if v, ok := st.lastErr.Load().(string); ok {
		res.LastError = v
	}
}

func connectPhase(cfg *config, st *stats, r *reactor, res *result, channels func(int) []string, own func(int) string) []*sub {
	t0 := time.Now()
	subs, failed := connectAll(cfg, st, r, cfg.subs, channels, own)
	res.ConnectS = time.Since(t0).Seconds()
	res.Connected = len(subs)
	res.ConnectFailed = failed
	return subs
}

// warmUp sends warm-ups until count() reaches target. It resends only when
// deliveries stop arriving for a while, so a slow hub is not flooded.
func warmUp(limit time.Duration, target int64, count func() int64, send func() (int, error)) (int, error) {
	deadline := time.Now().Add(limit)
	total := 0
	for time.Now().Before(deadline) {
		n, err := send()
		total += n
		if err != nil {
			return total, err
		}
		last := count()
		lastChange := time.Now()
		for time.Now().Before(deadline) {
			c := count()
			if c >= target {
				return total, nil
			}
			if c != last {
				last, lastChange = c, time.Now()
			} else if time.Since(lastChange) > 500*time.Millisecond {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if count() >= target {
		return total, nil
	}
	return total, fmt.Errorf("warm-up: only %d of %d subscriptions live after %s", count(), target, limit)
}

// dropCold closes subscribers that never saw a warm-up; they are reported, not measured.
func dropCold(r *reactor, subs []*sub, own bool) []*sub {
	out := subs[:0]
	for _, s := range subs {
		if s.warm.Load() && (!own || s.warmOwn.Load()) {
			out = append(out, s)
		} else {
			r.remove(s, false)
		}
	}
	return out
}

func runSingle(cfg *config, st *stats, r *reactor, res *result) {
	subs := connectPhase(cfg, st, r, res, func(int) []string { return []string{cfg.channel} }, nil)
	pub, err := newPublisher(cfg, st)
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer pub.close()

	t0 := time.Now()
	n, err := warmUp(cfg.warmup, int64(len(subs)), st.warm.Load, func() (int, error) {
		return 1, pub.send(cfg.channel, "warmup", []byte(`{"w":1}`))
	})
	res.WarmupS = time.Since(t0).Seconds()
	res.WarmupSent = n
	if err != nil {
		res.Error = err.Error()
	}
	subs = dropCold(r, subs, false)
	res.Ready = len(subs)
	if len(subs) == 0 {
		res.Error = "no subscriber is live"
		fillCounters(res, st)
		return
	}
	if cfg.mode == "idle" {
		holdIdle(cfg, st, r, res, subs)
		return
	}
	measure(cfg, st, res, subs, pub, func(int64) (string, int64) {
		return cfg.channel, int64(len(subs))
	})
	closeAll(r, subs)
}

func runChannels(cfg *config, st *stats, r *reactor, res *result) {
	own := func(i int) string { return fmt.Sprintf("own-%d", i) }
	subs := connectPhase(cfg, st, r, res, func(i int) []string { return []string{own(i), cfg.channel} }, own)
	pub, err := newPublisher(cfg, st)
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer pub.close()

	t0 := time.Now()
	n, err := warmUp(cfg.warmup, int64(len(subs)), st.warm.Load, func() (int, error) {
		return 1, pub.send(cfg.channel, "warmup_shared", []byte(`{"w":1}`))
	})
	res.WarmupSent = n
	if err == nil {
		// Every own channel needs its own warm-up: with a message queue in between,
		// subscriptions of one connection can go live out of order.
		n, err = warmUp(cfg.warmup, int64(len(subs)), st.warmOwn.Load, func() (int, error) {
			sent := 0
			for _, s := range subs {
				if !s.warmOwn.Load() {
					if err := pub.send(s.channel, "warmup_own", []byte(`{"w":1}`)); err != nil {
						return sent, err
					}
					sent++
				}
			}
			return sent, nil
		})
		res.WarmupSent += n
	}
	res.WarmupS = time.Since(t0).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	subs = dropCold(r, subs, true)
	res.Ready = len(subs)
	if len(subs) == 0 {
		res.Error = "no subscriber is live"
		fillCounters(res, st)
		return
	}
	rng := rand.New(rand.NewSource(cfg.seed))
	measure(cfg, st, res, subs, pub, func(seq int64) (string, int64) {
		if seq%2 == 0 {
			return subs[rng.Intn(len(subs))].channel, 1
		}
		return cfg.channel, int64(len(subs))
	})
	closeAll(r, subs)
}

// measure publishes for cfg.duration (as fast as possible in fanout mode,
// else at cfg.rate), then waits for outstanding deliveries.
func measure(cfg *config, st *stats, res *result, subs []*sub, pub publisher,
	target func(seq int64) (string, int64)) {
	pb := newPayloadBuilder(cfg.payloadSize)
	st.measuring.Store(true)
	cpu0 := cpuNs()
	srv0 := procCPUNs(cfg.serverPids)
	core0 := coreTicks(cfg.serverCPUs)
	start := time.Now()
	end := start.Add(cfg.duration)
	var sent, expected, stalls int64
	wantBySeq := make([]int32, 0, 1024)
	interval := time.Duration(float64(time.Second) / cfg.rate)
	n := int64(len(subs))
	for {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if cfg.mode == "fanout" {
			if cfg.window > 0 {
				waitWindow(st, expected-int64(cfg.window)*n, &stalls)
			}
		} else {
			at := start.Add(time.Duration(sent) * interval)
			if !at.Before(end) {
				break
			}
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
		}
		ch, want := target(sent)
		if err := pub.send(ch, "m", pb.build(sent)); err != nil {
			res.PubErrors++
			res.Error = "publish: " + err.Error()
			break
		}
		sent++
		expected += want
		if len(wantBySeq) < maxTrackedSeq {
			wantBySeq = append(wantBySeq, int32(want))
		}
	}
	pubEnd := time.Now()
	cpu1 := cpuNs()
	srv1 := procCPUNs(cfg.serverPids)
	core1 := coreTicks(cfg.serverCPUs)

	// Drain: until everything arrived, nothing arrived for drainIdle, or drain ran out.
	res.DrainEnd = "complete"
	lastCount := st.received.Load()
	lastChange := time.Now()
	for int64(st.received.Load()) < expected {
		time.Sleep(10 * time.Millisecond)
		c := st.received.Load()
		if c != lastCount {
			lastCount, lastChange = c, time.Now()
		}
		if time.Since(lastChange) > cfg.drainIdle {
			res.DrainEnd = "idle"
			break
		}
		if time.Since(pubEnd) > cfg.drain {
			res.DrainEnd = "timeout"
			break
		}
	}
	st.measuring.Store(false)
	drainEnd := time.Now()
	cpu2 := cpuNs()

	received := int64(st.received.Load())
	res.Sent = sent
	res.PublishS = pubEnd.Sub(start).Seconds()
	res.PublishRate = float64(sent) / res.PublishS
	res.Expected = expected
	res.Received = received
	res.Lost = max(expected-received, 0)
	if expected > 0 {
		res.LostPct = 100 * float64(res.Lost) / float64(expected)
	}
	res.OutOfOrder = int64(st.outOfOrder.Load())
	for seq, want := range wantBySeq {
		if got := st.perSeq[seq].Load(); got < want {
			res.ShortSeqs++
			if len(res.Missing) < 20 {
				res.Missing = append(res.Missing, [3]int64{int64(seq), int64(got), int64(want)})
			}
		}
	}
	res.DrainS = drainEnd.Sub(pubEnd).Seconds()
	res.WindowStalls = stalls
	if last := st.lastRecvNs.Load(); last > start.UnixNano() {
		res.ElapsedS = float64(last-start.UnixNano()) / 1e9
		res.DeliveriesPerS = float64(received) / res.ElapsedS
	}
	h := &st.lat
	if h.count.Load() > 0 {
		res.LatencyMs = &latency{
			P50:  h.quantile(0.50) / 1000,
			P90:  h.quantile(0.90) / 1000,
			P99:  h.quantile(0.99) / 1000,
			Max:  float64(h.maxUs.Load()) / 1000,
			Mean: float64(h.sumUs.Load()) / float64(h.count.Load()) / 1000,
		}
	}
	res.CPUPct = 100 * float64(cpu1-cpu0) / float64(pubEnd.Sub(start).Nanoseconds())
	res.CPUPctTotal = 100 * float64(cpu2-cpu0) / float64(drainEnd.Sub(start).Nanoseconds())
	if len(cfg.serverPids) > 0 {
		v := 100 * float64(srv1-srv0) / float64(pubEnd.Sub(start).Nanoseconds())
		res.ServerCPUPct = &v
	}
	if len(cfg.serverCPUs) > 0 {
		wall := float64(pubEnd.Sub(start).Nanoseconds()) / 1e7 // in 10 ms ticks
		busy := 100 * float64(core1.busy-core0.busy) / wall
		soft := 100 * float64(core1.softirq-core0.softirq) / wall
		res.CoreBusyPct, res.CoreSoftirqPct = &busy, &soft
		if res.ServerCPUPct != nil {
			// Whatever else ran on the server's cores: other processes, other tenants' steal.
			other := max(busy-soft-*res.ServerCPUPct, 0)
			res.CoreOtherPct = &other
		}
	}
	res.PubErrors += int64(pub.errorCount())
	fillCounters(res, st)
}

// waitWindow sleeps until the subscribers have received want deliveries, at
// most 100 ms: losses must not stall the publisher for good.
func waitWindow(st *stats, want int64, stalls *int64) {
	if int64(st.received.Load()) >= want {
		return
	}
	st.wakeAt.Store(want)
	st.waiting.Store(true)
	timer := time.NewTimer(100 * time.Millisecond)
	defer timer.Stop()
	for int64(st.received.Load()) < want {
		select {
		case <-st.wake:
			st.waiting.Store(true)
		case <-timer.C:
			*stalls++
			st.waiting.Store(false)
			return
		}
	}
	st.waiting.Store(false)
}

// holdIdle prints {"ready":true} and keeps the connections open until stdin
// closes, a signal arrives or cfg.hold runs out.
func holdIdle(cfg *config, st *stats, r *reactor, res *result, subs []*sub) {
	st.measuring.Store(true) // count disconnects while holding
	emit(map[string]any{"ready": true, "connected": len(subs)})
	stop := make(chan string, 3)
	go func() {
		r := bufio.NewReader(os.Stdin)
		for {
			if _, err := r.ReadByte(); err != nil {
				stop <- "stdin"
				return
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	t0 := time.Now()
	select {
	case <-stop:
	case <-sig:
	case <-time.After(cfg.hold):
	}
	res.HeldS = time.Since(t0).Seconds()
	fillCounters(res, st)
	st.measuring.Store(false)
	closeAll(r, subs)
}

// runGroups is the channels mode with -group-size K: subscriber i is on channel
// group-(i/K) alone, so N subscribers make N/K channels of K; each broadcast goes to
// one random group and is owed to that group's live subscribers.
func runGroups(cfg *config, st *stats, r *reactor, res *result) {
	k := cfg.groupSize
	group := func(i int) string { return fmt.Sprintf("group-%d", i/k) }
	subs := connectPhase(cfg, st, r, res, func(i int) []string { return []string{group(i)} }, group)
	pub, err := newPublisher(cfg, st)
	if err != nil {
		res.Error = err.Error()
		return
	}
	defer pub.close()

	t0 := time.Now()
	n, err := warmUp(cfg.warmup, int64(len(subs)), st.warmOwn.Load, func() (int, error) {
		// One warm-up per group that still has a cold subscriber.
		sent, seen := 0, map[string]bool{}
		for _, s := range subs {
			if !s.warmOwn.Load() && !seen[s.channel] {
				seen[s.channel] = true
				if err := pub.send(s.channel, "warmup_own", []byte(`{"w":1}`)); err != nil {
					return sent, err
				}
				sent++
			}
		}
		return sent, nil
	})
	res.WarmupS = time.Since(t0).Seconds()
	res.WarmupSent = n
	if err != nil {
		res.Error = err.Error()
	}
	live := subs[:0]
	for _, s := range subs {
		if s.warmOwn.Load() {
			live = append(live, s)
		} else {
			r.remove(s, false)
		}
	}
	subs = live
	res.Ready = len(subs)
	if len(subs) == 0 {
		res.Error = "no subscriber is live"
		fillCounters(res, st)
		return
	}
	names := []string{}
	count := map[string]int64{}
	for _, s := range subs {
		if count[s.channel] == 0 {
			names = append(names, s.channel)
		}
		count[s.channel]++
	}
	rng := rand.New(rand.NewSource(cfg.seed))
	measure(cfg, st, res, subs, pub, func(int64) (string, int64) {
		ch := names[rng.Intn(len(names))]
		return ch, count[ch]
	})
	closeAll(r, subs)
}
