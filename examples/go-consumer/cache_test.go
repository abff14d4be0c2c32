package main

import (
	"testing"
	"time"
)

func token(version int64, access string) Token {
	return Token{Tenant: "acme", Connection: "github", AccessToken: access, Version: version}
}

func TestHighestVersionWins(t *testing.T) {
	c := NewCache(10)
	if !c.Put(token(2, "v2")) {
		t.Fatal("first token refused")
	}
	if c.Put(token(1, "v1")) {
		t.Fatal("an older token replaced a newer one")
	}
	if got := c.Get("acme", "github", 0, time.Now()); got == nil || got.AccessToken != "v2" {
		t.Fatalf("want v2, got %+v", got)
	}
}

func TestRevokeLeavesATombstoneOnlyANewerTokenLifts(t *testing.T) {
	c := NewCache(10)
	c.Put(token(2, "v2"))
	if !c.Revoke("acme", "github", 3) {
		t.Fatal("revoke not applied")
	}
	if c.Put(token(2, "v2")) || c.Get("acme", "github", 0, time.Now()) != nil {
		t.Fatal("a replayed token came back after the revoke")
	}
	if !c.Put(token(4, "v4")) || c.Revoked("acme", "github") {
		t.Fatal("a newer token did not lift the tombstone")
	}
}

func TestTombstoneForACredentialNeverHeld(t *testing.T) {
	c := NewCache(10)
	c.Revoke("acme", "jira", 5)
	if c.Put(Token{Tenant: "acme", Connection: "jira", AccessToken: "old", Version: 4}) {
		t.Fatal("a replay of the revoked token was taken")
	}
}

func TestForgetKeepsVersions(t *testing.T) {
	c := NewCache(10)
	c.Put(token(3, "v3"))
	c.Forget()
	if c.Get("acme", "github", 0, time.Now()) != nil {
		t.Fatal("a forgotten token is still served")
	}
	if c.Put(token(2, "v2")) {
		t.Fatal("an older token was taken after a reconnect")
	}
	if !c.Put(token(3, "v3")) {
		t.Fatal("token.get's answer of the same version was refused after a reconnect")
	}
}

func TestBounded(t *testing.T) {
	c := NewCache(2)
	c.Put(Token{Tenant: "a", Connection: "x", Version: 1})
	c.Put(Token{Tenant: "b", Connection: "x", Version: 1})
	c.Put(Token{Tenant: "c", Connection: "x", Version: 1})
	if len(c.entries) != 2 || c.entries["a.x"] != nil {
		t.Fatalf("the least recently touched entry was not dropped: %d entries", len(c.entries))
	}
}

func TestExpiryAndMinTTL(t *testing.T) {
	c := NewCache(10)
	expires := time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339Nano)
	c.Put(Token{Tenant: "acme", Connection: "github", Version: 1, ExpiresAt: &expires})
	if c.Get("acme", "github", 10*time.Second, time.Now()) == nil {
		t.Fatal("a token with 20 s left was not served for a 10 s minimum")
	}
	if c.Get("acme", "github", 30*time.Second, time.Now()) != nil {
		t.Fatal("a token with 20 s left was served for a 30 s minimum")
	}
}
