package integration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3/lagertest"
	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/iris-cf/iris/route"
)

// rawCodec sends and receives protobuf bytes as they are: the specs speak
// locket's two messages they need, encoded by hand (protowire), so the
// suite needs no locket module (its dependencies would move the product's).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// locketLockRequest is locket's LockRequest (models/locket.proto):
// resource 1 {key 1, owner 2, value 3, type 4, type_code 5}, ttl_in_seconds 2.
func locketLockRequest(key, owner, value string, ttlSeconds int64) []byte {
	var resource []byte
	resource = protowire.AppendTag(resource, 1, protowire.BytesType)
	resource = protowire.AppendString(resource, key)
	resource = protowire.AppendTag(resource, 2, protowire.BytesType)
	resource = protowire.AppendString(resource, owner)
	resource = protowire.AppendTag(resource, 3, protowire.BytesType)
	resource = protowire.AppendString(resource, value)
	resource = protowire.AppendTag(resource, 4, protowire.BytesType)
	resource = protowire.AppendString(resource, "presence")
	resource = protowire.AppendTag(resource, 5, protowire.VarintType)
	resource = protowire.AppendVarint(resource, 2) // PRESENCE
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, resource)
	req = protowire.AppendTag(req, 2, protowire.VarintType)
	return protowire.AppendVarint(req, uint64(ttlSeconds))
}

// holdCellPresence keeps cellID's presence in the cluster's locket, as a
// rep does, until the spec ends: BBS's convergence then leaves the
// instances the spec claims on that cell alone.
func holdCellPresence(cellID string) {
	GinkgoHelper()
	address := os.Getenv("IRIS_LOCKET_ADDRESS")
	Expect(address).NotTo(BeEmpty(), "IRIS_LOCKET_ADDRESS is not set")
	pair, err := tls.LoadX509KeyPair(os.Getenv("IRIS_BBS_CLIENT_CERT_FILE"), os.Getenv("IRIS_BBS_CLIENT_KEY_FILE"))
	Expect(err).NotTo(HaveOccurred())
	caPEM, err := os.ReadFile(os.Getenv("IRIS_BBS_CA_FILE"))
	Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(caPEM)).To(BeTrue())
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12,
	})), grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	Expect(err).NotTo(HaveOccurred())
	presence := models.NewCellPresence(cellID, "127.0.0.1:1", "https://127.0.0.1:1", "z1",
		models.NewCellCapacity(1<<20, 1<<20, 1000), []string{"docker"}, nil, nil, nil, nil, nil)
	value, err := json.Marshal(presence)
	Expect(err).NotTo(HaveOccurred())
	request := locketLockRequest(cellID, "iris-it-"+cellID, string(value), 15)
	lock := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var response []byte
		return conn.Invoke(ctx, "/models.Locket/Lock", &request, &response)
	}
	Expect(lock()).To(Succeed())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(3 * time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				if err := lock(); err != nil {
					GinkgoWriter.Printf("cell %s: renewing presence: %v\n", cellID, err)
				}
			}
		}
	}()
	DeferCleanup(func() {
		close(stop)
		<-done
		conn.Close()
	})
}

// fakeCell plays a Diego cell and its route-emitter for the LRPs it is
// told about, against the real BBS: it claims and starts their UNCLAIMED
// instances, registers their routes over NATS before it reports them
// RUNNING (so gorouter knows an instance before anything reads it as
// running), and, once BBS no longer desires one, unregisters its routes
// and removes the instance, as a rep stopping its container.
type fakeCell struct {
	id     string
	bbs    bbsclient.InternalClient
	nats   *natsgo.Conn
	mu     sync.Mutex
	guids  map[string]bool
	ports  map[string]uint32 // instance guid → host port
	routes map[string][]string
	next   uint32
}

func startFakeCell(bbs bbsclient.InternalClient) *fakeCell {
	GinkgoHelper()
	c := &fakeCell{id: "iris-it-cell-" + uuid.NewString()[:8], bbs: bbs, guids: map[string]bool{}, ports: map[string]uint32{}, routes: map[string][]string{}, next: 61000}
	holdCellPresence(c.id)
	conn, err := natsgo.Connect(nats.URL())
	Expect(err).NotTo(HaveOccurred())
	c.nats = conn
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := c.converge(); err != nil {
				GinkgoWriter.Printf("fake cell: %v\n", err)
			}
		}
	}()
	DeferCleanup(func() {
		close(stop)
		<-done
		conn.Close()
	})
	return c
}

// serve makes the cell run lrp's instances (on its hostnames).
func (c *fakeCell) serve(lrp *models.DesiredLRP, hostnames ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guids[lrp.ProcessGuid] = true
	c.routes[lrp.ProcessGuid] = hostnames
}

func (c *fakeCell) converge() error {
	logger := lagertest.NewTestLogger("fake-cell")
	c.mu.Lock()
	var guids []string
	for guid := range c.guids {
		guids = append(guids, guid)
	}
	c.mu.Unlock()
	if len(guids) == 0 {
		return nil
	}
	desired, err := c.bbs.DesiredLRPSchedulingInfos(logger, "", models.DesiredLRPFilter{ProcessGuids: guids})
	if err != nil {
		return fmt.Errorf("listing desired: %w", err)
	}
	wanted := map[string]bool{}
	for _, d := range desired {
		wanted[d.ProcessGuid] = true
	}
	actual, err := c.bbs.ActualLRPsByProcessGuids(logger, "", guids)
	if err != nil {
		return fmt.Errorf("listing actual: %w", err)
	}
	for _, a := range actual {
		key := a.ActualLRPKey
		switch {
		case !wanted[a.ProcessGuid] && a.CellId == c.id:
			c.publish(route.SubjectUnregister, a.ProcessGuid, a.InstanceGuid)
			if err := c.bbs.RemoveActualLRP(logger, "", &key, &a.ActualLRPInstanceKey); err != nil {
				return fmt.Errorf("removing %s/%d: %w", a.ProcessGuid, a.Index, err)
			}
		case wanted[a.ProcessGuid] && a.State == models.ActualLRPStateUnclaimed:
			instance := models.NewActualLRPInstanceKey(uuid.NewString(), c.id)
			if err := c.bbs.ClaimActualLRP(logger, "", &key, &instance); err != nil {
				return fmt.Errorf("claiming %s/%d: %w", a.ProcessGuid, a.Index, err)
			}
			if err := c.start(key, instance); err != nil {
				return err
			}
		case wanted[a.ProcessGuid] && a.State == models.ActualLRPStateClaimed && a.CellId == c.id:
			if err := c.start(key, a.ActualLRPInstanceKey); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *fakeCell) start(key models.ActualLRPKey, instance models.ActualLRPInstanceKey) error {
	c.mu.Lock()
	port, ok := c.ports[instance.InstanceGuid]
	if !ok {
		c.next++
		port = c.next
		c.ports[instance.InstanceGuid] = port
	}
	c.mu.Unlock()
	c.publish(route.SubjectRegister, key.ProcessGuid, instance.InstanceGuid)
	netInfo := models.NewActualLRPNetInfo("127.0.0.1", "127.0.0.1", models.ActualLRPNetInfo_PreferredAddressHost, models.NewPortMapping(port, 8080))
	err := c.bbs.StartActualLRP(lagertest.NewTestLogger("fake-cell"), "", &key, &instance, &netInfo, nil, nil, true, "z1")
	if err != nil {
		return fmt.Errorf("starting %s/%d: %w", key.ProcessGuid, key.Index, err)
	}
	return nil
}

func (c *fakeCell) publish(subject, processGUID, instanceGUID string) {
	c.mu.Lock()
	msg := route.RegistryMessage{Host: "127.0.0.1", Port: c.ports[instanceGUID], URIs: c.routes[processGUID], PrivateInstanceID: instanceGUID}
	c.mu.Unlock()
	data, err := json.Marshal(msg)
	Expect(err).NotTo(HaveOccurred())
	Expect(c.nats.Publish(subject, data)).To(Succeed())
	Expect(c.nats.Flush()).To(Succeed())
}

// gorouterView is gorouter's routing table as the NATS messages build it
// (without pruning: the specs are shorter than its TTL), and every moment a
// watched route lost its last endpoint.
type gorouterView struct {
	mu        sync.Mutex
	endpoints map[string]map[string]bool // uri → host:port
	watched   map[string]bool
	emptied   []string
}

func watchGorouter(uris []string) *gorouterView {
	GinkgoHelper()
	v := &gorouterView{endpoints: map[string]map[string]bool{}, watched: map[string]bool{}}
	for _, uri := range uris {
		v.watched[uri] = true
	}
	conn, err := natsgo.Connect(nats.URL())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	for _, subject := range []string{route.SubjectRegister, route.SubjectUnregister} {
		_, err := conn.Subscribe(subject, func(m *natsgo.Msg) {
			var msg route.RegistryMessage
			if json.Unmarshal(m.Data, &msg) != nil {
				return
			}
			v.apply(m.Subject == route.SubjectRegister, msg)
		})
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(conn.Flush()).To(Succeed())
	return v
}

func (v *gorouterView) apply(register bool, msg route.RegistryMessage) {
	v.mu.Lock()
	defer v.mu.Unlock()
	endpoint := fmt.Sprintf("%s:%d", msg.Host, msg.Port)
	for _, uri := range msg.URIs {
		if register {
			if v.endpoints[uri] == nil {
				v.endpoints[uri] = map[string]bool{}
			}
			v.endpoints[uri][endpoint] = true
			continue
		}
		if len(v.endpoints[uri]) > 0 {
			delete(v.endpoints[uri], endpoint)
			if len(v.endpoints[uri]) == 0 && v.watched[uri] {
				v.emptied = append(v.emptied, fmt.Sprintf("%s lost its last endpoint (%s) at %s", uri, endpoint, time.Now().Format(time.StampMilli)))
			}
		}
	}
}

// unrouted are the watched routes without an endpoint now.
func (v *gorouterView) unrouted() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for uri := range v.watched {
		if len(v.endpoints[uri]) == 0 {
			out = append(out, uri)
		}
	}
	return out
}

func (v *gorouterView) losses() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.emptied...)
}

// ccSync plays CC's sync: it lists scheduling infos through Iris every
// interval and keeps every list in which a watched process was missing or
// listed twice, and every failed list.
type ccSync struct {
	mu       sync.Mutex
	lists    int
	failures []string
	wrong    []string
}

func startCCSync(client bbsclient.InternalClient, guids []string, interval time.Duration) *ccSync {
	s := &ccSync{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		logger := lagertest.NewTestLogger("cc-sync")
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			// The scheduling infos and the whole LRPs (list.r3): the BBS
			// front answers each on a path of its own.
			infos, err := client.DesiredLRPSchedulingInfos(logger, "", models.DesiredLRPFilter{Domain: "cf-apps"})
			count := map[string]int{}
			for _, info := range infos {
				count[info.ProcessGuid]++
			}
			s.check("scheduling infos", guids, count, err)
			lrps, err := client.DesiredLRPs(logger, "", models.DesiredLRPFilter{Domain: "cf-apps"})
			count = map[string]int{}
			for _, lrp := range lrps {
				count[lrp.ProcessGuid]++
			}
			s.check("desired LRPs", guids, count, err)
		}
	}()
	DeferCleanup(func() { close(stop); <-done })
	return s
}

// check records one list: failed, or listing a guid other than once.
func (s *ccSync) check(list string, guids []string, count map[string]int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists++
	if err != nil {
		s.failures = append(s.failures, list+": "+err.Error())
		return
	}
	for _, guid := range guids {
		if count[guid] != 1 {
			s.wrong = append(s.wrong, fmt.Sprintf("%s: %s listed %d times at %s", list, guid, count[guid], time.Now().Format(time.StampMilli)))
		}
	}
}

// report is the number of lists, the failed lists and the wrong ones.
func (s *ccSync) report() (int, []string, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists, append([]string(nil), s.failures...), append([]string(nil), s.wrong...)
}
