package main

import (
	"encoding/json"
	"strings"

	"github.com/nats-io/nats.go"
)

type getReply struct {
	OK    bool   `json:"ok"`
	Token *Token `json:"token"`
	Error *struct {
		Code              string `json:"code"`
		Message           string `json:"message"`
		RetryAfterSeconds *int   `json:"retryAfterSeconds"`
	} `json:"error"`
}

// event is the union of the token.* payloads this consumer reads.
type event struct {
	Token
	EventID string `json:"eventId"`
	Status  string `json:"status"`
	Code    string `json:"code"`
}

// signatureOf reads the scheme-2 headers; a header given twice counts as unsigned, since
// which copy a reader takes is not part of the contract.
func signatureOf(h nats.Header) (signer, signedAt, signature string) {
	one := func(name string) string {
		if values := h.Values(name); len(values) == 1 {
			return values[0]
		}
		return ""
	}
	return one(signerHeader), one(signedAtHeader), one(signatureHeader)
}

func (c *consumer) request(tenant, connection string, body map[string]any) {
	subject := "token.get." + tenant + "." + connection
	payload, _ := json.Marshal(body)
	msg, err := c.nc.Request(subject, payload, c.timeout)
	if err != nil {
		c.emit(map[string]any{"kind": "error", "subject": subject, "reason": err.Error()})
		return
	}
	var reply getReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		c.emit(map[string]any{"kind": "refused", "what": "reply", "subject": subject, "reason": "not JSON"})
		return
	}
	if !reply.OK || reply.Token == nil {
		out := map[string]any{"kind": "error", "subject": subject}
		if reply.Error != nil {
			out["code"], out["message"] = reply.Error.Code, reply.Error.Message
			if reply.Error.RetryAfterSeconds != nil {
				out["retryAfterSeconds"] = *reply.Error.RetryAfterSeconds
			}
			if reply.Error.Code == "revoked" {
				c.cache.Forget()
			}
		}
		c.emit(out)
		return
	}
	// A reply is signed over the subject it was asked on, so a reply meant for another
	// credential, or an event passed off as a reply, does not verify here.
	signer, signedAt, signature := signatureOf(msg.Header)
	if err := c.verifier.Verify(subject, signer, signedAt, signature, msg.Data); err != nil {
		c.emit(map[string]any{"kind": "refused", "what": "reply", "subject": subject, "reason": err.Error()})
		return
	}
	if reply.Token.Tenant != tenant || reply.Token.Connection != connection {
		c.emit(map[string]any{"kind": "refused", "what": "reply", "subject": subject, "reason": "payload names another credential"})
		return
	}
	if !c.cache.Put(*reply.Token) {
		// Older than what the cache knows (or revoked since): a replayed reply.
		c.emit(map[string]any{"kind": "refused", "what": "reply", "subject": subject, "reason": "older than the version known"})
		return
	}
	c.emitToken("reply", reply.Token)
}

func (c *consumer) onEvent(msg *nats.Msg) {
	parts := strings.Split(msg.Subject, ".")
	if len(parts) != 4 {
		return
	}
	kind, tenant, connection := parts[1], parts[2], parts[3]
	signer, signedAt, signature := signatureOf(msg.Header)
	if err := c.verifier.Verify(msg.Subject, signer, signedAt, signature, msg.Data); err != nil {
		c.emit(map[string]any{"kind": "refused", "what": "event", "subject": msg.Subject, "reason": err.Error()})
		return
	}
	var e event
	if err := json.Unmarshal(msg.Data, &e); err != nil || e.Tenant != tenant || e.Connection != connection {
		c.emit(map[string]any{"kind": "refused", "what": "event", "subject": msg.Subject, "reason": "payload names another credential"})
		return
	}
	applied := false
	switch kind {
	case "refreshed", "registered":
		applied = e.AccessToken != "" && c.cache.Put(e.Token)
	case "revoked":
		applied = c.cache.Revoke(tenant, connection, e.Version)
	}
	out := map[string]any{"kind": "event", "type": kind, "tenant": tenant, "connection": connection, "version": e.Version, "applied": applied}
	if e.Code != "" {
		out["code"], out["status"] = e.Code, e.Status
	}
	c.emit(out)
}
