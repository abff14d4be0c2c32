package main

import (
	"container/list"
	"sync"
	"time"
)

// Token is what token.get answers and what token.refreshed / token.registered carry.
type Token struct {
	Tenant      string            `json:"tenant"`
	Connection  string            `json:"connection"`
	Provider    string            `json:"provider"`
	AccessToken string            `json:"accessToken"`
	TokenType   string            `json:"tokenType"`
	ExpiresAt   *string           `json:"expiresAt"`
	Scope       *string           `json:"scope,omitempty"`
	Version     int64             `json:"version"`
	Extras      map[string]string `json:"extras,omitempty"`
}

// entry is what the cache knows of one credential: the highest version seen, whether that
// version was a revoke (a tombstone), and the token of that version when it holds one.
type entry struct {
	key     string
	version int64
	revoked bool
	token   *Token
	element *list.Element
}

// Cache keeps the newest token per credential. Versions only go up: an event or reply of
// a version below the one known is ignored, so a replayed or late message never brings
// back an older token, and a revoke leaves a tombstone that only a strictly newer token
// lifts. Versions and tombstones are also kept for credentials never held (bounded: the
// least recently touched are dropped first), so a replay of a revoked token is refused
// even by a consumer that started after the revoke.
type Cache struct {
	mu      sync.Mutex
	entries map[string]*entry
	order   *list.List
	limit   int
}

func NewCache(limit int) *Cache {
	return &Cache{entries: map[string]*entry{}, order: list.New(), limit: limit}
}

func cacheKey(tenant, connection string) string { return tenant + "." + connection }

func (c *Cache) touch(key string) *entry {
	if e, ok := c.entries[key]; ok {
		c.order.MoveToFront(e.element)
		return e
	}
	e := &entry{key: key}
	e.element = c.order.PushFront(e)
	c.entries[key] = e
	for c.order.Len() > c.limit {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*entry).key)
	}
	return e
}

// Put applies a token; it reports whether the cache took it.
func (c *Cache) Put(t Token) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.touch(cacheKey(t.Tenant, t.Connection))
	if t.Version < e.version || (t.Version == e.version && (e.revoked || e.token != nil)) {
		return false
	}
	copied := t
	e.version, e.revoked, e.token = t.Version, false, &copied
	return true
}

// Revoke records a revoke at version; it reports whether it was news. A revoke takes a
// version of its own, above the token it revoked.
func (c *Cache) Revoke(tenant, connection string, version int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.touch(cacheKey(tenant, connection))
	if version < e.version || (version == e.version && e.revoked) {
		return false
	}
	e.version, e.revoked, e.token = version, true, nil
	return true
}

// Forget drops the tokens held but keeps every version and tombstone: after a reconnect
// events may have been missed, so the next Get asks token.get again, while an older
// message is still refused.
func (c *Cache) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		e.token = nil
	}
}

// Get answers a token valid for at least minTTL, or nil (then ask token.get).
func (c *Cache) Get(tenant, connection string, minTTL time.Duration, now time.Time) *Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey(tenant, connection)]
	if !ok || e.token == nil {
		return nil
	}
	if e.token.ExpiresAt != nil {
		expires, err := time.Parse(time.RFC3339Nano, *e.token.ExpiresAt)
		if err != nil || expires.Sub(now) < minTTL {
			return nil
		}
	}
	copied := *e.token
	return &copied
}

// Revoked reports whether the newest thing known of a credential is a revoke.
func (c *Cache) Revoked(tenant, connection string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey(tenant, connection)]
	return ok && e.revoked
}
