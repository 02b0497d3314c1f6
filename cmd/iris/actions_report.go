package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"code.cloudfoundry.org/tlsconfig"

	"github.com/iris-cf/iris/actions"
	"github.com/iris-cf/iris/models"
)

// actionsReportStaging is the last container of an OPI buildpack staging
// pod (`iris actions report-staging`): it sends the runner's report to
// Iris's PUT /stage/{guid}/completed with the staging's token. It runs in
// a container of its own so that the token never reaches the container
// where buildpacks and app code run.
const actionsReportStaging = "report-staging"

// Environment of the report container (k8s.BuildStaging sets it).
const (
	stagingCompletionURLEnv   = "STAGING_COMPLETION_URL"
	stagingCompletionTokenEnv = "STAGING_COMPLETION_TOKEN"
	stagingCompletionCAEnv    = "STAGING_COMPLETION_CA_FILE"
)

// reportAttempts and reportBackoff bound how long a staging pod waits for
// Iris (a rollout, a leader change): the pod's failure is reported by Iris
// itself after that, as a StagingError.
const (
	reportAttempts = 6
	reportBackoff  = time.Second
)

func reportStaging(args []string) int {
	flags := flag.NewFlagSet("iris actions "+actionsReportStaging, flag.ContinueOnError)
	reportFile := flags.String("report", "", "the runner's report ({failed, failure_reason, result})")
	guid := flags.String("staging-guid", "", "the staging's guid (task_guid of the completion)")
	if err := flags.Parse(args); err != nil {
		return actionsExitBadInput
	}
	url, token := os.Getenv(stagingCompletionURLEnv), os.Getenv(stagingCompletionTokenEnv)
	if *reportFile == "" || *guid == "" || url == "" || token == "" {
		fmt.Fprintf(os.Stderr, "iris actions %s: --report, --staging-guid, $%s and $%s are required\n", actionsReportStaging, stagingCompletionURLEnv, stagingCompletionTokenEnv)
		return actionsExitBadInput
	}
	data, err := os.ReadFile(*reportFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions %s: reading the report: %v\n", actionsReportStaging, err)
		return actionsExitFailed
	}
	var result actions.Result
	if err := json.Unmarshal(data, &result); err != nil {
		fmt.Fprintf(os.Stderr, "iris actions %s: decoding the report: %v\n", actionsReportStaging, err)
		return actionsExitFailed
	}
	body, err := json.Marshal(models.StagingCompletedRequest{
		TaskGUID: *guid, Failed: result.Failed, FailureReason: result.FailureReason, Result: result.Result,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions %s: %v\n", actionsReportStaging, err)
		return actionsExitFailed
	}
	client, err := completionClient(os.Getenv(stagingCompletionCAEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "iris actions %s: %v\n", actionsReportStaging, err)
		return actionsExitBadInput
	}
	backoff := reportBackoff
	for attempt := 1; ; attempt++ {
		err = putCompletion(client, url, token, body)
		if err == nil {
			fmt.Printf("reported staging %s (failed: %t)\n", *guid, result.Failed)
			return 0
		}
		var final *finalAnswer
		if errors.As(err, &final) || attempt == reportAttempts {
			fmt.Fprintf(os.Stderr, "iris actions %s: %v\n", actionsReportStaging, err)
			return actionsExitFailed
		}
		fmt.Fprintf(os.Stderr, "iris actions %s: attempt %d: %v; retrying\n", actionsReportStaging, attempt, err)
		time.Sleep(backoff)
		backoff *= 2
	}
}

// finalAnswer is an error that sending again would not change: a 4xx from
// Iris, or a request that cannot be made.
type finalAnswer struct{ reason string }

func (f *finalAnswer) Error() string { return f.reason }

func putCompletion(client *http.Client, url, token string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return &finalAnswer{reason: fmt.Sprintf("building the request: %v", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return &finalAnswer{reason: fmt.Sprintf("Iris refused the completion: HTTP %d", resp.StatusCode)}
	}
	return fmt.Errorf("HTTP %d", resp.StatusCode)
}

// completionClient verifies Iris with caFile, or the system roots.
func completionClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{}, nil
	}
	tlsConfig, err := tlsconfig.Build(tlsconfig.WithInternalServiceDefaults()).Client(tlsconfig.WithAuthorityFromFile(caFile))
	if err != nil {
		return nil, fmt.Errorf("TLS config: %w", err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}, nil
}
