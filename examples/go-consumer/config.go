package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

type config struct {
	url             string
	user, pass      string
	nkeySeedFile    string
	credsFile       string
	inboxPrefix     string
	trustedSigners  []string
	maxSignatureAge time.Duration
	scopes          []string
	requestTimeout  time.Duration
	cacheLimit      int
}

// loadConfig reads the same variable names as the Node services, and names every problem
// at once, never a value.
func loadConfig(env func(string) string) (config, error) {
	cfg := config{
		url:             orDefault(env("NATS_URL"), "nats://127.0.0.1:4222"),
		user:            env("NATS_USER"),
		pass:            env("NATS_PASS"),
		nkeySeedFile:    env("NATS_NKEY_SEED_FILE"),
		credsFile:       env("NATS_CREDS"),
		inboxPrefix:     env("NATS_INBOX_PREFIX"),
		trustedSigners:  splitList(env("EVENT_TRUSTED_SIGNERS")),
		scopes:          splitList(env("TOKEN_SCOPES")),
		requestTimeout:  5 * time.Second,
		cacheLimit:      10_000,
		maxSignatureAge: 900 * time.Second,
	}
	var problems []string
	if seconds := env("SIGNATURE_MAX_AGE_SECONDS"); seconds != "" {
		n, err := strconv.Atoi(seconds)
		if err != nil || n <= 0 {
			problems = append(problems, "SIGNATURE_MAX_AGE_SECONDS must be a positive whole number of seconds")
		}
		cfg.maxSignatureAge = time.Duration(n) * time.Second
	}
	if len(cfg.trustedSigners) == 0 {
		problems = append(problems, "EVENT_TRUSTED_SIGNERS must list the refresher's public signing key(s) (U...)")
	}
	if (cfg.user == "") != (cfg.pass == "") {
		problems = append(problems, "NATS_USER and NATS_PASS go together")
	}
	if len(cfg.scopes) == 0 {
		problems = append(problems, "TOKEN_SCOPES must list what this consumer serves, e.g. acme.* or *.twitter")
	}
	for _, scope := range cfg.scopes {
		// "<tenant>.<connection>", each a name or "*": the part of an event subject after
		// "token.<type>.", and what the consumer's NATS permissions allow.
		if len(strings.Split(scope, ".")) != 2 {
			problems = append(problems, "TOKEN_SCOPES entries are <tenant>.<connection>, each a name or *")
			break
		}
	}
	if len(problems) > 0 {
		return cfg, errors.New(strings.Join(problems, "; "))
	}
	return cfg, nil
}

func (cfg config) natsOptions() ([]nats.Option, error) {
	var options []nats.Option
	if cfg.inboxPrefix != "" {
		options = append(options, nats.CustomInboxPrefix(cfg.inboxPrefix))
	}
	if cfg.user != "" {
		options = append(options, nats.UserInfo(cfg.user, cfg.pass))
	}
	if cfg.credsFile != "" {
		options = append(options, nats.UserCredentials(cfg.credsFile))
	}
	if cfg.nkeySeedFile != "" {
		option, err := nats.NkeyOptionFromSeed(cfg.nkeySeedFile)
		if err != nil {
			return nil, errors.New("NATS_NKEY_SEED_FILE is not a readable nkey seed file")
		}
		options = append(options, option)
	}
	return append(options, nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond)), nil
}

func orDefault(value, fallback string) string {
	if strings.TrimSpace(value) == "" {
		return fallback
	}
	return value
}

func splitList(value string) []string {
	var out []string
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
