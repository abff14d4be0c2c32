package main

import (
	"encoding/json"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// latencies runs n sequential requests and answers their p50 and p99 in microseconds.
// With verify, each reply must be a token.get answer whose signature checks out, as a
// consumer would take it; without, the reply is only received (the echo baseline).
func (c *consumer) latencies(subject string, n int, verify bool) (p50, p99 float64, failed int) {
	samples := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		msg, err := c.nc.Request(subject, []byte("{}"), c.timeout)
		if err == nil && verify {
			signer, signedAt, signature := signatureOf(msg.Header)
			err = c.verifier.Verify(subject, signer, signedAt, signature, msg.Data)
			var reply getReply
			if err == nil && (json.Unmarshal(msg.Data, &reply) != nil || !reply.OK) {
				failed++
				continue
			}
		}
		if err != nil {
			failed++
			continue
		}
		samples = append(samples, float64(time.Since(start).Microseconds()))
	}
	if len(samples) == 0 {
		return 0, 0, failed
	}
	sort.Float64s(samples)
	return samples[len(samples)/2], samples[len(samples)*99/100], failed
}

// bench answers `bench <subject> <n> [raw]`: sequential request latency, as one JSON line.
func (c *consumer) bench(args []string) {
	n, err := strconv.Atoi(args[2])
	if err != nil || n <= 0 {
		c.emit(map[string]any{"kind": "usage", "line": "bench <subject> <n> [raw]"})
		return
	}
	verify := len(args) < 4 || args[3] != "raw"
	p50, p99, failed := c.latencies(args[1], n, verify)
	c.emit(map[string]any{"kind": "bench", "subject": args[1], "verified": verify, "n": n, "p50Us": p50, "p99Us": p99, "failed": failed})
}

// echoResponder is the bench's baseline: a bare responder on subject that answers every
// request with the same bytes, in the queue group the refresher uses.
func echoResponder(nc *nats.Conn, subject string, reply []byte) error {
	if _, err := nc.QueueSubscribe(subject, "refresher", func(m *nats.Msg) { _ = m.Respond(reply) }); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	os.Stdout.WriteString(`{"kind":"ready","echo":` + strconv.Quote(subject) + "}\n")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	return nil
}
