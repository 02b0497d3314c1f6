package bbs_test

import (
	"fmt"

	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/iris-cf/iris/bifrost/bbs"
)

// instance is an actual LRP instance of guid at index on cell.
func instance(guid string, index int32, cell string) *models.ActualLRP {
	return &models.ActualLRP{
		ActualLRPKey:         models.NewActualLRPKey(guid, index, "cf-apps"),
		ActualLRPInstanceKey: models.NewActualLRPInstanceKey(fmt.Sprintf("%s-instance-%d", guid, index), cell),
		State:                models.ActualLRPStateRunning,
	}
}

func desiredCreated(guid string) models.Event {
	return models.NewDesiredLRPCreatedEvent(ccDesiredLRP(processGuid[:37]+guid), "trace")
}

// receiveNow takes the next event without waiting.
func receiveNow(s *bbs.Subscription) models.Event {
	select {
	case event := <-s.Events():
		return event
	default:
		Fail("no event waiting")
		return nil
	}
}

var _ = Describe("EventHub", func() {
	var hub *bbs.EventHub

	BeforeEach(func() {
		hub = bbs.NewEventHub(lagertest.NewTestLogger("hub"), 3)
		DeferCleanup(hub.Close)
	})

	It("hands every subscriber every event, in order", func() {
		a, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		b, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())

		events := []models.Event{desiredCreated("a"), desiredCreated("b"), desiredCreated("c")}
		for _, e := range events {
			hub.Publish(e)
		}
		for _, s := range []*bbs.Subscription{a, b} {
			for _, want := range events {
				Expect(receiveNow(s).Key()).To(Equal(want.Key()))
			}
			Expect(s.Events()).NotTo(Receive())
		}
	})

	It("leaves out other cells' instance events for a cell's subscriber, as BBS filters", func() {
		cell, err := hub.Subscribe("cell-1")
		Expect(err).NotTo(HaveOccurred())
		all, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())

		mine, theirs := instance("p", 0, "cell-1"), instance("p", 1, "cell-2")
		moved := instance("p", 1, "cell-1")
		events := []models.Event{
			models.NewActualLRPInstanceCreatedEvent(theirs, ""),
			models.NewActualLRPInstanceChangedEvent(theirs, theirs, ""),
			models.NewActualLRPCrashedEvent(theirs, theirs),
			models.NewActualLRPInstanceRemovedEvent(theirs, ""),
			desiredCreated("d"),
			models.NewActualLRPInstanceCreatedEvent(mine, ""),
			models.NewActualLRPInstanceChangedEvent(theirs, moved, ""),
			models.NewActualLRPCrashedEvent(mine, mine),
			models.NewActualLRPInstanceRemovedEvent(mine, ""),
		}
		// Published in batches that fit the buffer of 3.
		var gotCell, gotAll []string
		for i, e := range events {
			hub.Publish(e)
			gotAll = append(gotAll, receiveNow(all).EventType())
			if i >= 4 {
				gotCell = append(gotCell, receiveNow(cell).EventType())
			}
		}
		Expect(cell.Events()).NotTo(Receive())
		Expect(gotCell).To(Equal([]string{
			models.EventTypeDesiredLRPCreated,
			models.EventTypeActualLRPInstanceCreated,
			models.EventTypeActualLRPInstanceChanged,
			models.EventTypeActualLRPCrashed,
			models.EventTypeActualLRPInstanceRemoved,
		}))
		Expect(gotAll).To(HaveLen(len(events)))
	})

	It("cuts a subscriber that falls a whole buffer behind, without holding up the others", func() {
		slow, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		fast, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())

		for i := range 10 {
			hub.Publish(desiredCreated(fmt.Sprint(i)))
			Expect(receiveNow(fast).Key()).To(HaveSuffix(fmt.Sprint(i)))
			if i < 3 {
				Expect(slow.Done()).NotTo(BeClosed())
			}
		}
		Expect(slow.Done()).To(BeClosed())
		Expect(fast.Done()).NotTo(BeClosed())
		Expect(hub.Subscribers()).To(Equal(1))
	})

	It("stops delivering to a closed subscription", func() {
		s, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		s.Close()
		s.Close()
		Expect(s.Done()).To(BeClosed())
		hub.Publish(desiredCreated("a"))
		Expect(s.Events()).NotTo(Receive())
		Expect(hub.Subscribers()).To(Equal(0))
	})

	It("ends every subscription on Close and refuses new ones", func() {
		a, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		b, err := hub.Subscribe("cell-1")
		Expect(err).NotTo(HaveOccurred())

		hub.Close()
		hub.Close()
		Expect(a.Done()).To(BeClosed())
		Expect(b.Done()).To(BeClosed())
		_, err = hub.Subscribe("")
		Expect(err).To(MatchError(bbs.ErrHubClosed))
		hub.Publish(desiredCreated("a"))
		Expect(a.Events()).NotTo(Receive())
	})

	It("ends every subscription on Reset and keeps serving new ones", func() {
		a, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		hub.Reset()
		Expect(a.Done()).To(BeClosed())
		Expect(hub.Subscribers()).To(Equal(0))
		b, err := hub.Subscribe("")
		Expect(err).NotTo(HaveOccurred())
		hub.Publish(desiredCreated("a"))
		Expect(receiveNow(b).(*models.DesiredLRPCreatedEvent).DesiredLrp.ProcessGuid).To(HaveSuffix("a"))
		Expect(a.Events()).NotTo(Receive())
	})
})
