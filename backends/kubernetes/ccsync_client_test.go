package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	bbsclient "code.cloudfoundry.org/bbs"
	"code.cloudfoundry.org/bbs/models"
	"code.cloudfoundry.org/lager/v3"
	"github.com/gogo/protobuf/proto"

	"github.com/iris-cf/iris/internal/benchenv"
	irismodels "github.com/iris-cf/iris/models"
)

// ccSyncClientEnv names the file holding a ccSyncCall: set, the test binary
// is BenchmarkCCSyncAtScale's client process (TestCCSyncClientProcess).
// The client runs apart from the server so that its allocations and
// garbage collection do not share the server's heap of caches (several GB
// at 100,000 LRPs): each side is measured as it would run in production.
const ccSyncClientEnv = "IRIS_CCSYNC_CLIENT"

// ccSyncCall is one list the client process times.
type ccSyncCall struct {
	// Kind is "actual" (list_by_process_guids), "scheduling", "desired"
	// (BBS lists, domain cf-apps) or "opi" (GET /apps).
	Kind   string
	URL    string
	Guids  []string
	Want   int
	Rounds int
	// Result is the file the client writes its ccSyncResult to (the test
	// binary's stdout carries the testing package's own lines).
	Result string
}

// ccSyncResult is what the client process measured.
type ccSyncResult struct {
	// Answer is request sent to last byte received, the body read into
	// a reused buffer: Iris's answer as CC's HTTP client sees it.
	Answer []time.Duration
	// Decode is decoding each answer as the real client does (bbs's
	// proto.Unmarshal of the response; encoding/json for OPI).
	Decode []time.Duration
	// Client is the real client's whole call (bbs client; net/http and
	// encoding/json for OPI).
	Client []time.Duration
	// CPU is the client process's CPU over the requests and decodings
	// (not its start).
	CPU      time.Duration
	Bytes    int
	Requests int
	Err      string
}

// TestCCSyncClientProcess is the client half of BenchmarkCCSyncAtScale;
// it runs only when the benchmark starts it.
func TestCCSyncClientProcess(t *testing.T) {
	path := os.Getenv(ccSyncClientEnv)
	if path == "" {
		t.Skip("the client process of BenchmarkCCSyncAtScale")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var call ccSyncCall
	if err := json.Unmarshal(data, &call); err != nil {
		t.Fatal(err)
	}
	result := runCCSyncCall(call)
	out, err := json.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(call.Result, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func runCCSyncCall(call ccSyncCall) (result ccSyncResult) {
	fail := func(err error) ccSyncResult {
		result.Err = err.Error()
		return result
	}
	raw, decode, real, err := ccSyncCalls(call)
	if err != nil {
		return fail(err)
	}
	cpu := benchenv.ProcessCPU()
	defer func() { result.CPU = benchenv.ProcessCPU() - cpu }()
	var body bytes.Buffer
	// One untimed warm-up of each, then the rounds.
	for i := 0; i <= call.Rounds; i++ {
		body.Reset()
		start := time.Now()
		if err := raw(&body); err != nil {
			return fail(err)
		}
		answered := time.Since(start)
		result.Requests++
		start = time.Now()
		n, err := decode(body.Bytes())
		if err != nil {
			return fail(fmt.Errorf("decoding: %w", err))
		}
		decoded := time.Since(start)
		if n != call.Want {
			return fail(fmt.Errorf("answered %d of %d", n, call.Want))
		}
		if i > 0 {
			result.Answer, result.Decode = append(result.Answer, answered), append(result.Decode, decoded)
		}
		result.Bytes = body.Len()
	}
	for i := 0; i <= call.Rounds; i++ {
		start := time.Now()
		n, err := real()
		if err != nil {
			return fail(err)
		}
		took := time.Since(start)
		result.Requests++
		if n != call.Want {
			return fail(fmt.Errorf("the client got %d of %d", n, call.Want))
		}
		if i > 0 {
			result.Client = append(result.Client, took)
		}
	}
	return result
}

// ccSyncCalls returns, for call's kind, the raw request (into body), the
// real client's decoding of an answer, and the real client's whole call;
// each returns the number of items answered.
func ccSyncCalls(call ccSyncCall) (raw func(body *bytes.Buffer) error, decode func([]byte) (int, error), real func() (int, error), err error) {
	logger := lager.NewLogger("ccsync-client")
	client, err := bbsclient.NewClientWithConfig(bbsclient.ClientConfig{URL: call.URL, RequestTimeout: 15 * time.Minute})
	if err != nil {
		return nil, nil, nil, err
	}
	httpClient := &http.Client{Timeout: 15 * time.Minute}
	filter := models.DesiredLRPFilter{Domain: "cf-apps"}
	post := func(path string, request proto.Message) func(*bytes.Buffer) error {
		encoded, err := proto.Marshal(request)
		if err != nil {
			panic(err)
		}
		return func(body *bytes.Buffer) error {
			req, err := http.NewRequest(http.MethodPost, call.URL+path, bytes.NewReader(encoded))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/x-protobuf")
			return fetch(httpClient, req, body)
		}
	}
	switch call.Kind {
	case "actual":
		raw = post("/v1/actual_lrps/list_by_process_guids", &models.ActualLRPsByProcessGuidsRequest{ProcessGuids: call.Guids})
		decode = func(body []byte) (int, error) {
			response := &models.ActualLRPsByProcessGuidsResponse{}
			err := proto.Unmarshal(body, response)
			return len(response.ActualLrps), answerErr(err, response.Error)
		}
		real = func() (int, error) {
			actual, err := client.ActualLRPsByProcessGuids(logger, "", call.Guids)
			return len(actual), err
		}
	case "scheduling":
		raw = post("/v1/desired_lrp_scheduling_infos/list", &models.DesiredLRPsRequest{Domain: filter.Domain})
		decode = func(body []byte) (int, error) {
			response := &models.DesiredLRPSchedulingInfosResponse{}
			err := proto.Unmarshal(body, response)
			return len(response.DesiredLrpSchedulingInfos), answerErr(err, response.Error)
		}
		real = func() (int, error) {
			infos, err := client.DesiredLRPSchedulingInfos(logger, "", filter)
			return len(infos), err
		}
	case "desired":
		raw = post("/v1/desired_lrps/list.r3", &models.DesiredLRPsRequest{Domain: filter.Domain})
		decode = func(body []byte) (int, error) {
			response := &models.DesiredLRPsResponse{}
			err := proto.Unmarshal(body, response)
			return len(response.DesiredLrps), answerErr(err, response.Error)
		}
		real = func() (int, error) {
			lrps, err := client.DesiredLRPs(logger, "", filter)
			return len(lrps), err
		}
	case "opi":
		raw = func(body *bytes.Buffer) error {
			req, err := http.NewRequest(http.MethodGet, call.URL+"/apps", nil)
			if err != nil {
				return err
			}
			return fetch(httpClient, req, body)
		}
		decode = func(body []byte) (int, error) {
			var list irismodels.DesiredLRPSchedulingInfosResponse
			err := json.Unmarshal(body, &list)
			return len(list.DesiredLRPSchedulingInfos), err
		}
		real = func() (int, error) {
			resp, err := httpClient.Get(call.URL + "/apps")
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			var list irismodels.DesiredLRPSchedulingInfosResponse
			err = json.NewDecoder(resp.Body).Decode(&list)
			return len(list.DesiredLRPSchedulingInfos), err
		}
	default:
		return nil, nil, nil, fmt.Errorf("unknown kind %q", call.Kind)
	}
	return raw, decode, real, nil
}

// fetch sends req and reads the whole answer into body.
func fetch(client *http.Client, req *http.Request, body *bytes.Buffer) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(body, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
	return nil
}

func answerErr(err error, response *models.Error) error {
	if err != nil {
		return err
	}
	if response != nil {
		return response
	}
	return nil
}
