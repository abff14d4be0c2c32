// Command go-consumer is a Tokenkeeper consumer written without the Node client: it asks
// token.get over NATS under its own user and inbox prefix, verifies every reply and
// event (signature scheme 2), and keeps a small cache fed by pushed events in which the
// highest version wins and revokes leave tombstones.
//
// It reads commands on standard input, one per line, and writes one JSON object per line
// on standard output (never a token: a token is shown by its SHA-256 fingerprint):
//
//	get <tenant> <connection> [minTtlSeconds]   a token from the cache, else token.get
//	reject <tenant> <connection> <version>      an API answered 401 to that version
//	bench <subject> <n> [raw]                   sequential request latency (p50, p99)
//	quit
//
// With ECHO_SUBJECT set it is instead a bare responder that answers every request on that
// subject with ECHO_REPLY: the baseline the bench compares token.get against.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// The event types a consumer follows, each subscribed by name: permissions name them one
// by one, and so does a careful consumer.
var eventTypes = []string{"refreshed", "registered", "revoked", "failed", "recovered", "expiring"}

type consumer struct {
	nc       *nats.Conn
	verifier *Verifier
	cache    *Cache
	timeout  time.Duration
	out      *json.Encoder
	outMu    sync.Mutex
}

func main() {
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
		os.Exit(2)
	}
	c := &consumer{cache: NewCache(cfg.cacheLimit), timeout: cfg.requestTimeout, out: json.NewEncoder(os.Stdout)}
	c.verifier, err = NewVerifier(cfg.trustedSigners, cfg.maxSignatureAge, time.Now)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
		os.Exit(2)
	}
	options, err := cfg.natsOptions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer:", err)
		os.Exit(2)
	}
	options = append(options,
		nats.Name("go-consumer"),
		// Events may have been missed while disconnected: ask token.get again for each
		// credential, but keep every version and tombstone.
		// The server's asynchronous errors, such as a permissions violation, which a request
		// itself only sees as a missing answer.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.emit(map[string]any{"kind": "nats_error", "reason": err.Error()})
		}),
		nats.ReconnectHandler(func(*nats.Conn) { c.cache.Forget(); c.emit(map[string]any{"kind": "reconnected"}) }),
	)
	c.nc, err = nats.Connect(cfg.url, options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer: cannot connect to NATS:", err)
		os.Exit(1)
	}
	defer c.nc.Drain()
	if subject := os.Getenv("ECHO_SUBJECT"); subject != "" {
		if err := echoResponder(c.nc, subject, []byte(os.Getenv("ECHO_REPLY"))); err != nil {
			fmt.Fprintln(os.Stderr, "go-consumer: echo responder:", err)
			os.Exit(1)
		}
		return
	}
	for _, scope := range cfg.scopes {
		for _, kind := range eventTypes {
			if _, err := c.nc.Subscribe("token."+kind+"."+scope, c.onEvent); err != nil {
				fmt.Fprintln(os.Stderr, "go-consumer: cannot subscribe:", err)
				os.Exit(1)
			}
		}
	}
	if err := c.nc.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "go-consumer: subscriptions not confirmed:", err)
		os.Exit(1)
	}
	c.emit(map[string]any{"kind": "ready", "scopes": cfg.scopes})

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	lines := make(chan string)
	go readLines(lines)
	for {
		select {
		case <-stop:
			return
		case line, ok := <-lines:
			if !ok || strings.TrimSpace(line) == "quit" {
				return
			}
			c.command(strings.Fields(line))
		}
	}
}

func readLines(lines chan<- string) {
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		lines <- scanner.Text()
	}
	close(lines)
}

func (c *consumer) command(args []string) {
	switch {
	case len(args) >= 3 && args[0] == "get":
		minTTL := 30 * time.Second
		if len(args) == 4 {
			if seconds, err := strconv.Atoi(args[3]); err == nil {
				minTTL = time.Duration(seconds) * time.Second
			}
		}
		if token := c.cache.Get(args[1], args[2], minTTL, time.Now()); token != nil {
			c.emitToken("cache", token)
			return
		}
		c.request(args[1], args[2], map[string]any{"minTtlSeconds": int(minTTL / time.Second)})
	case len(args) >= 3 && args[0] == "bench":
		c.bench(args)
	case len(args) == 4 && args[0] == "reject":
		version, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			c.emit(map[string]any{"kind": "usage", "line": strings.Join(args, " ")})
			return
		}
		c.request(args[1], args[2], map[string]any{"rejectedVersion": version})
	default:
		c.emit(map[string]any{"kind": "usage", "line": strings.Join(args, " ")})
	}
}

func (c *consumer) emit(line map[string]any) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	_ = c.out.Encode(line)
}

func (c *consumer) emitToken(source string, t *Token) {
	c.emit(map[string]any{
		"kind": "token", "source": source, "tenant": t.Tenant, "connection": t.Connection,
		"version": t.Version, "expiresAt": t.ExpiresAt, "fingerprint": fingerprint(t.AccessToken),
	})
}

// fingerprint names a token in output without revealing it.
func fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:8])
}
