package route

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// gorouter's subjects.
const (
	SubjectRegister   = "router.register"
	SubjectUnregister = "router.unregister"
	SubjectGreet      = "router.greet"
	SubjectStart      = "router.start"
)

// reEmitSteps is how many slices one re-emit pass is cut into, spread over
// half the register interval, so 250,000 registrations never leave at once.
const reEmitSteps = 20

// standbyUnregisterWindow is how long a standby keeps the unregistrations
// it did not send. gorouter prunes a route not refreshed for its prune
// threshold (120 s by default), so older ones are moot.
const standbyUnregisterWindow = 2 * time.Minute

// maxStandbyUnregisters bounds that memory; the oldest go first.
const maxStandbyUnregisters = 10_000

// Greeting is gorouter's router.start message and router.greet reply.
type Greeting struct {
	ID                               string   `json:"id"`
	Hosts                            []string `json:"hosts"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds"`
}

// Bus is the NATS connection the emitter talks through; NATSBus implements
// it. The emitter never closes it: it outlives the emitter's terms as
// leader.
type Bus interface {
	Publish(subject string, data []byte) error
	// Subscribe calls handler for each message on subject until
	// unsubscribe is called.
	Subscribe(subject string, handler func(data []byte)) (unsubscribe func(), err error)
	// Greet publishes router.greet and hands every reply to handler until
	// stop is called.
	Greet(handler func(data []byte)) (stop func(), err error)
	// OnReconnect calls fn after each reconnect to NATS; nil clears it.
	OnReconnect(fn func())
}

// EventSource delivers StatefulSet and pod events; k8s.Caches implements it.
type EventSource interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
}

// Emitter keeps the route table in step with the informers and gorouter in
// step with the table. Every replica keeps the table; only the one running
// Run (the Lease holder) publishes. A standby remembers the unregistrations
// it withheld, so that when it takes over, instances that went away during
// the handover leave gorouter at once instead of after its prune threshold.
type Emitter struct {
	logger lager.Logger
	bus    Bus
	clock  clock.WithTicker

	mu       sync.Mutex
	table    *Table
	interval time.Duration
	// active is true while Run runs; guarded by mu, like withheld.
	active   bool
	withheld []withheldUnregister

	reEmitNow chan struct{}

	published     atomic.Uint64
	publishFailed atomic.Uint64
}

type withheldUnregister struct {
	at      time.Time
	message RegistryMessage
}

// Published is how many register/unregister messages went to NATS.
func (e *Emitter) Published() uint64 { return e.published.Load() }

// PublishFailures is how many messages NATS did not take.
func (e *Emitter) PublishFailures() uint64 { return e.publishFailed.Load() }

// NewEmitter registers its handlers with source; Run emits. Run may run
// again after it returned (leadership lost and won back).
func NewEmitter(logger lager.Logger, bus Bus, source EventSource, tlsPort uint32, defaultInterval time.Duration, clock clock.WithTicker) (*Emitter, error) {
	e := &Emitter{
		logger:    logger.Session("route-emitter"),
		bus:       bus,
		clock:     clock,
		table:     NewTable(tlsPort),
		interval:  defaultInterval,
		reEmitNow: make(chan struct{}, 1),
	}
	if err := source.AddEventHandlers(e.statefulSetHandler(), e.podHandler()); err != nil {
		return nil, err
	}
	return e, nil
}

// Run is an ifrit runner: it publishes while it runs. It starts with the
// unregistrations withheld as a standby, then registers everything, since
// gorouter may have heard nothing for a while.
func (e *Emitter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	unsubscribe, err := e.bus.Subscribe(SubjectStart, e.onGreeting)
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", SubjectStart, err)
	}
	defer unsubscribe()
	stopGreeting, err := e.bus.Greet(e.onGreeting)
	if err != nil {
		return fmt.Errorf("greeting routers: %w", err)
	}
	defer stopGreeting()
	// After a reconnect NATS may have lost gorouter's view of us: send
	// everything at once rather than waiting for the next pass.
	e.bus.OnReconnect(func() {
		e.logger.Info("nats-reconnected")
		e.emitAll(0, nil)
	})
	defer e.bus.OnReconnect(nil)

	withheld := e.activate()
	defer e.deactivate()
	close(ready)
	for _, m := range withheld {
		e.publish(SubjectUnregister, m)
	}
	e.emitAll(0, nil)
	e.logger.Info("started", lager.Data{"interval": e.currentInterval().String(), "withheld_unregistrations": len(withheld)})

	timer := e.clock.NewTimer(e.currentInterval())
	defer timer.Stop()
	for {
		select {
		case <-signals:
			e.logger.Info("stopped")
			return nil
		case <-e.reEmitNow:
			e.emitAll(0, nil)
			// A greeting may have changed the interval: count from now.
			timer.Reset(e.currentInterval())
		case <-timer.C():
			if sig, stopped := e.emitAll(e.currentInterval()/2, signals); stopped {
				e.logger.Info("stopped", lager.Data{"signal": sig.String()})
				return nil
			}
			timer.Reset(e.currentInterval())
		}
	}
}

// activate starts publishing and hands over the recent withheld
// unregistrations.
func (e *Emitter) activate() []RegistryMessage {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active = true
	// apply prunes old entries only when a new one arrives, so the window
	// is checked here as well.
	var recent []RegistryMessage
	for _, w := range e.withheld {
		if e.clock.Since(w.at) < standbyUnregisterWindow {
			recent = append(recent, w.message)
		}
	}
	e.withheld = nil
	return recent
}

func (e *Emitter) deactivate() {
	e.mu.Lock()
	e.active = false
	e.mu.Unlock()
}

// onGreeting adopts a router's register interval and, since a router that
// just started knows no routes, schedules a full emit.
func (e *Emitter) onGreeting(data []byte) {
	var g Greeting
	if err := json.Unmarshal(data, &g); err != nil {
		e.logger.Error("bad-greeting", err, lager.Data{"data": string(data)})
		return
	}
	if g.MinimumRegisterIntervalInSeconds > 0 {
		e.mu.Lock()
		e.interval = time.Duration(g.MinimumRegisterIntervalInSeconds) * time.Second
		e.mu.Unlock()
	}
	e.logger.Info("router-greeting", lager.Data{"router": g.ID, "interval_seconds": g.MinimumRegisterIntervalInSeconds})
	e.requestReEmit()
}

// requestReEmit asks the loop for a full emit at once (one pending request
// stands for any number).
func (e *Emitter) requestReEmit() {
	select {
	case e.reEmitNow <- struct{}{}:
	default:
	}
}

func (e *Emitter) currentInterval() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.interval
}

// apply changes the table and publishes what the change calls for, or, on
// a standby, remembers the unregistrations.
func (e *Emitter) apply(change func(*Table) Changes) {
	e.mu.Lock()
	changes := change(e.table)
	if !e.active {
		now := e.clock.Now()
		for _, m := range changes.Unregistrations {
			e.withheld = append(e.withheld, withheldUnregister{at: now, message: m})
		}
		// Oldest first: drop what is past the window or over the bound.
		drop := max(0, len(e.withheld)-maxStandbyUnregisters)
		for drop < len(e.withheld) && now.Sub(e.withheld[drop].at) >= standbyUnregisterWindow {
			drop++
		}
		if drop > 0 {
			e.withheld = append(e.withheld[:0], e.withheld[drop:]...)
		}
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	for _, m := range changes.Unregistrations {
		e.publish(SubjectUnregister, m)
	}
	for _, m := range changes.Registrations {
		e.publish(SubjectRegister, m)
	}
}

// emitAll registers every route, in reEmitSteps slices spread over spread
// (all at once when spread is 0). The table lock is held for one slice at a
// time, so informer events keep flowing during a pass. A signal between
// slices ends the pass early and is returned; so does losing the lead.
func (e *Emitter) emitAll(spread time.Duration, signals <-chan os.Signal) (os.Signal, bool) {
	start := e.clock.Now()
	e.mu.Lock()
	guids := e.table.ProcessGUIDs()
	e.mu.Unlock()

	per := (len(guids) + reEmitSteps - 1) / reEmitSteps
	if per == 0 {
		return nil, false
	}
	pause := spread / reEmitSteps
	sent := 0
	var batch []RegistryMessage
	for i := 0; i < len(guids); i += per {
		batch = batch[:0]
		e.mu.Lock()
		if !e.active {
			e.mu.Unlock()
			return nil, false
		}
		for _, guid := range guids[i:min(i+per, len(guids))] {
			e.table.EachOf(guid, func(m RegistryMessage) { batch = append(batch, m) })
		}
		e.mu.Unlock()
		for _, m := range batch {
			e.publish(SubjectRegister, m)
		}
		sent += len(batch)
		if pause > 0 && i+per < len(guids) {
			select {
			case sig := <-signals:
				return sig, true
			case <-e.reEmitNow:
				// A router greeted mid-pass: it needs every route now, not
				// at this pass's pace (half the old interval, 10 s by
				// default). Leave the pass; the loop sees the greeting again
				// and emits everything at once.
				e.requestReEmit()
				return nil, false
			case <-e.clock.After(pause):
			}
		}
	}
	e.logger.Debug("re-emitted", lager.Data{"registrations": sent, "duration": e.clock.Since(start).String()})
	return nil, false
}

func (e *Emitter) publish(subject string, m RegistryMessage) {
	data, err := json.Marshal(m)
	if err != nil {
		e.logger.Error("marshal-failed", err)
		return
	}
	if err := e.bus.Publish(subject, data); err != nil {
		// While disconnected nats.go buffers; an error here means the
		// buffer is full or the connection closed. The next pass resends.
		e.publishFailed.Add(1)
		e.logger.Error("publish-failed", err, lager.Data{"subject": subject})
		return
	}
	e.published.Add(1)
}
