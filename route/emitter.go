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

// Greeting is gorouter's router.start message and router.greet reply.
type Greeting struct {
	ID                               string   `json:"id"`
	Hosts                            []string `json:"hosts"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds"`
}

// Bus is the NATS connection the emitter talks through; *nats.Conn via
// NATSBus implements it.
type Bus interface {
	Publish(subject string, data []byte) error
	// Subscribe calls handler for each message on subject.
	Subscribe(subject string, handler func(data []byte)) error
	// Greet publishes router.greet and hands every reply to handler.
	Greet(handler func(data []byte)) error
	// OnReconnect calls fn after each reconnect to NATS.
	OnReconnect(fn func())
	Close()
}

// EventSource delivers StatefulSet and pod events; k8s.Caches implements it.
type EventSource interface {
	AddEventHandlers(statefulSets, pods cache.ResourceEventHandler) error
}

// Emitter keeps the route table in step with the informers and gorouter in
// step with the table.
type Emitter struct {
	logger lager.Logger
	bus    Bus

	mu       sync.Mutex
	table    *Table
	interval time.Duration

	reEmitNow chan struct{}

	published     atomic.Uint64
	publishFailed atomic.Uint64
}

// Published is how many register/unregister messages went to NATS.
func (e *Emitter) Published() uint64 { return e.published.Load() }

// PublishFailures is how many messages NATS did not take.
func (e *Emitter) PublishFailures() uint64 { return e.publishFailed.Load() }

// NewEmitter registers its handlers with source; Run starts emitting.
func NewEmitter(logger lager.Logger, bus Bus, source EventSource, tlsPort uint32, defaultInterval time.Duration) (*Emitter, error) {
	e := &Emitter{
		logger:    logger.Session("route-emitter"),
		bus:       bus,
		table:     NewTable(tlsPort),
		interval:  defaultInterval,
		reEmitNow: make(chan struct{}, 1),
	}
	if err := source.AddEventHandlers(e.statefulSetHandler(), e.podHandler()); err != nil {
		return nil, err
	}
	return e, nil
}

// Run is an ifrit runner.
func (e *Emitter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	defer e.bus.Close()
	if err := e.bus.Subscribe(SubjectStart, e.onGreeting); err != nil {
		return fmt.Errorf("subscribing to %s: %w", SubjectStart, err)
	}
	if err := e.bus.Greet(e.onGreeting); err != nil {
		return fmt.Errorf("greeting routers: %w", err)
	}
	// After a reconnect NATS may have lost gorouter's view of us: send
	// everything at once rather than waiting for the next pass.
	e.bus.OnReconnect(func() {
		e.logger.Info("nats-reconnected")
		e.emitAll(0, nil)
	})
	close(ready)
	e.logger.Info("started", lager.Data{"interval": e.currentInterval().String()})

	timer := time.NewTimer(e.currentInterval())
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
		case <-timer.C:
			if sig, stopped := e.emitAll(e.currentInterval()/2, signals); stopped {
				e.logger.Info("stopped", lager.Data{"signal": sig.String()})
				return nil
			}
			timer.Reset(e.currentInterval())
		}
	}
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

// apply changes the table and publishes what the change calls for.
func (e *Emitter) apply(change func(*Table) Changes) {
	e.mu.Lock()
	changes := change(e.table)
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
// slices ends the pass early and is returned.
func (e *Emitter) emitAll(spread time.Duration, signals <-chan os.Signal) (os.Signal, bool) {
	start := time.Now()
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
			case <-time.After(pause):
			}
		}
	}
	e.logger.Debug("re-emitted", lager.Data{"registrations": sent, "duration": time.Since(start).String()})
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
