package bbs

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/utils/clock"
)

// DomainStore keeps domains in memory with BBS's TTL semantics: a domain
// upserted with a TTL is fresh until the TTL runs out, one upserted with
// TTL 0 stays fresh. Losing them on a restart is harmless: CC upserts
// cf-apps and cf-tasks every 30 s with a 120 s TTL, so a restarted Iris
// reports them stale for at most one sync, just as a fresh BBS would.
type DomainStore struct {
	clock clock.PassiveClock

	mu      sync.Mutex
	expires map[string]time.Time
}

// NewDomainStore returns an empty store reading time from clock.
func NewDomainStore(clock clock.PassiveClock) *DomainStore {
	return &DomainStore{clock: clock, expires: map[string]time.Time{}}
}

// never is the expiry of a domain upserted without a TTL.
var never = time.Unix(0, math.MaxInt64)

// UpsertDomain makes domain fresh for ttlSeconds from now (0: for ever).
func (d *DomainStore) UpsertDomain(_ context.Context, logger lager.Logger, domain string, ttlSeconds uint32) error {
	expiry := never
	if ttlSeconds > 0 {
		expiry = d.clock.Now().Add(time.Duration(ttlSeconds) * time.Second)
	}
	d.mu.Lock()
	_, known := d.expires[domain]
	d.expires[domain] = expiry
	// Forget long-expired domains here rather than in a goroutine: the set
	// is tiny (CC uses two) and upserts are regular.
	now := d.clock.Now().Round(time.Second)
	for name, expires := range d.expires {
		if !expires.After(now) {
			delete(d.expires, name)
		}
	}
	d.mu.Unlock()
	if !known {
		logger.Info("added-domain", lager.Data{"domain": domain, "ttl_seconds": ttlSeconds})
	}
	return nil
}

// FreshDomains lists the domains whose TTL has not run out, sorted. Like
// BBS it compares with the current time rounded to the second.
func (d *DomainStore) FreshDomains(context.Context, lager.Logger) ([]string, error) {
	now := d.clock.Now().Round(time.Second)
	d.mu.Lock()
	defer d.mu.Unlock()
	var fresh []string
	for name, expires := range d.expires {
		if expires.After(now) {
			fresh = append(fresh, name)
		}
	}
	slices.Sort(fresh)
	return fresh, nil
}
