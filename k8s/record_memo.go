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
	// routes is recordRoutes(compact), "" if it has none.
	routes string
}

func newCompactedRecords(clock clock.PassiveClock) *compactedRecords {
	return &compactedRecords{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		table: newShareTable(clock, func(a, b *compactedRecord) bool {
			return a.hashes == b.hashes && a.size == b.size && a.replicas == b.replicas
		}),
	}
}

// compact returns compactRecord(encoded, replicas) and its recordRoutes,
// made once per record and replicas. Callers hold the leaner's lock.
func (c *compactedRecords) compact(encoded string, replicas *int32) (compact, routes string) {
	probe := &compactedRecord{size: len(encoded), replicas: -1}
	probe.hashes[0], probe.hashes[1] = maphash.String(c.seeds[0], encoded), maphash.String(c.seeds[1], encoded)
	if replicas != nil {
		probe.replicas = *replicas
	}
	kept := c.table.share(probe.hashes[0], probe)
	if kept == probe {
		probe.compact = compactRecord(encoded, replicas)
		probe.routes, _ = recordRoutes(probe.compact)
	}
	return kept.compact, kept.routes
}
