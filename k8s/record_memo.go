package k8s

import (
	"hash/maphash"

	"k8s.io/utils/clock"
)

// compactedRecords remembers the compacted form of the BBS LRP records the
// StatefulSet transform has made recently. Compacting decodes a record and
// builds an s2 dictionary from its scheduling info: about 40 µs and 42 KB
// per watch event (BenchmarkLeanStatefulSet), while most events of a
// StatefulSet (status updates as its instances come and go) carry the
// record unchanged. A record is known by two independent 64-bit hashes of
// its annotation, its length and the replicas its scheduling info takes:
// a wrong match would give an LRP another's record, so one hash alone is
// not trusted. Entries not used for two generations (shareTable) are
// forgotten, so deleted StatefulSets do not leak and a foundation where
// nothing changes keeps none.
type compactedRecords struct {
	seeds [2]maphash.Seed
	table *shareTable[*compactedRecord]
}

type compactedRecord struct {
	hashes   [2]uint64
	size     int
	replicas int32 // -1: none set
	compact  string
	// routes are two hashes and the length of recordRoutes(compact)
	// (routesLen -1: none). The routes themselves are not kept: 200 bytes
	// and more per LRP, they are what leaving them in the record saves.
	routes    [2]uint64
	routesLen int
}

func newCompactedRecords(clock clock.PassiveClock) *compactedRecords {
	return &compactedRecords{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		table: newShareTable(clock, func(a, b *compactedRecord) bool {
			return a.hashes == b.hashes && a.size == b.size && a.replicas == b.replicas
		}),
	}
}

// compact returns compactRecord(encoded, replicas), made once per record
// and replicas, and whether routes (a routes annotation) is its
// recordRoutes. Callers hold the leaner's lock.
func (c *compactedRecords) compact(encoded string, replicas *int32, routes string) (compact string, routesFromRecord bool) {
	probe := &compactedRecord{size: len(encoded), replicas: -1}
	probe.hashes = c.hashes(encoded)
	if replicas != nil {
		probe.replicas = *replicas
	}
	kept := c.table.share(probe.hashes[0], probe)
	if kept == probe {
		probe.compact = compactRecord(encoded, replicas)
		probe.routesLen = -1
		if made, ok := recordRoutes(probe.compact); ok {
			probe.routes, probe.routesLen = c.hashes(made), len(made)
		}
	}
	return kept.compact, kept.routesLen == len(routes) && kept.routes == c.hashes(routes)
}

// hashes are two independent hashes of s.
func (c *compactedRecords) hashes(s string) [2]uint64 {
	return [2]uint64{maphash.String(c.seeds[0], s), maphash.String(c.seeds[1], s)}
}
