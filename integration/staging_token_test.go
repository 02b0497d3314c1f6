package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/iris-cf/iris/k8s"
	"github.com/iris-cf/iris/models"
)

// stagingCompletionToken reads what a buildpack staging's reporting
// container gets:
// its token (from the Secret its env names) and, when Iris is reached over
// https, the CA it verifies Iris with.
func stagingCompletionToken(ns string, job *batchv1.Job) (token string, ca []byte) {
	GinkgoHelper()
	uploader := job.Spec.Template.Spec.Containers[0]
	Expect(uploader.Name).To(Equal(k8s.StagingReporterName))
	for _, e := range uploader.Env {
		if e.Name != k8s.StagingCompletionTokenEnv {
			continue
		}
		Expect(e.ValueFrom).NotTo(BeNil())
		ref := e.ValueFrom.SecretKeyRef
		secret, err := clientset.CoreV1().Secrets(ns).Get(context.Background(), ref.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		return string(secret.Data[ref.Key]), secret.Data["ca.crt"]
	}
	Fail("the reporting container has no " + k8s.StagingCompletionTokenEnv)
	return "", nil
}

// asUploader sends a request as a staging pod does: TLS trusting roots,
// no client certificate, the token (if any) as a bearer token.
func asUploader(roots *x509.CertPool, method, url, token, body string) (int, string) {
	GinkgoHelper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	Expect(err).NotTo(HaveOccurred())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(data)
}

var _ = Describe("A staging pod without a client certificate", func() {
	It("reports its own staging over mTLS with its token, and nothing else, and the token is never logged", func() {
		guid, other := uuid.NewString(), uuid.NewString()
		stage(guid, buildpackStaging(guid))
		stage(other, buildpackStaging(other))
		DeferCleanup(func() { request("DELETE", "/stage/"+other, nil) })
		Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }).Should(HaveLen(1))
		Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, other) }).Should(HaveLen(1))
		token, _ := stagingCompletionToken(namespace, &stagingJobs(guid)[0])
		otherToken, _ := stagingCompletionToken(namespace, &stagingJobs(other)[0])
		Expect(token).NotTo(Equal(otherToken))
		roots := serverCA.Pool()
		completed := `{"task_guid":"` + guid + `","failed":false,"result":"{\"lifecycle_type\":\"buildpack\",\"lifecycle_metadata\":{\"detected_buildpack\":\"ruby\"},\"process_types\":{\"web\":\"rackup\"},\"execution_metadata\":\"\"}"}`

		for _, refused := range []struct{ method, path, token string }{
			{"PUT", "/stage/" + guid + "/completed", ""},
			{"PUT", "/stage/" + guid + "/completed", otherToken},
			{"PUT", "/stage/" + other + "/completed", token},
			{"GET", "/apps", token},
			{"DELETE", "/stage/" + guid, token},
			{"POST", "/stage/" + uuid.NewString(), token},
		} {
			status, body := asUploader(roots, refused.method, irisTLSURL+refused.path, refused.token, completed)
			Expect(status).To(Equal(http.StatusUnauthorized), "%+v: %s", refused, body)
		}
		Expect(cc.stagingCallbacks(guid, false)).To(BeEmpty())

		status, body := asUploader(roots, "PUT", irisTLSURL+"/stage/"+guid+"/completed", token, completed)
		Expect(status).To(Equal(http.StatusOK), body)
		callback := oneStagingCallback(guid)
		Expect(callback.Error).To(BeNil())
		Expect(string(callback.Result)).To(ContainSubstring(`"detected_buildpack":"ruby"`))
		Expect(cc.stagingCallbacks(other, false)).To(BeEmpty())

		Expect(string(irisSession.Out.Contents())).NotTo(ContainSubstring(token))
		Expect(string(irisSession.Err.Contents())).NotTo(ContainSubstring(token))
	})
})

var _ = Describe("A buildpack staging no node has room for", func() {
	It("fails at once as InsufficientResources, once, and its Job is stopped", func() {
		guid := uuid.NewString()
		req := buildpackStaging(guid)
		req.MemoryMB = 64 * 1024 * 1024 // 64 TiB: more than any node has
		start := time.Now()
		stage(guid, req)
		callback := oneStagingCallback(guid)
		Expect(callback.Error).NotTo(BeNil())
		Expect(*callback.Error).To(Equal(models.StagingError{ID: "InsufficientResources", Message: "insufficient resources: memory"}))
		Expect(time.Since(start)).To(BeNumerically("<", time.Minute), "long before the staging deadline (600 s here)")
		Eventually(func(g Gomega) *bool { return stagingJobsWith(g, guid)[0].Spec.Suspend }).Should(HaveValue(BeTrue()))
	})
})

var _ = Describe("An uploader reporting a failed buildpack", func() {
	It("reaches CC with the error id CC gives the builder's exit code", func() {
		guid := uuid.NewString()
		stage(guid, buildpackStaging(guid))
		Eventually(func(g Gomega) []batchv1.Job { return stagingJobsWith(g, guid) }).Should(HaveLen(1))
		token, _ := stagingCompletionToken(namespace, &stagingJobs(guid)[0])
		status, body := asUploader(serverCA.Pool(), "PUT", irisTLSURL+"/stage/"+guid+"/completed", token,
			`{"task_guid":"`+guid+`","failed":true,"failure_reason":"Failed to compile droplet: exit status 223","result":""}`)
		Expect(status).To(Equal(http.StatusOK), body)
		callback := oneStagingCallback(guid)
		Expect(callback.Error).To(Equal(&models.StagingError{ID: "BuildpackCompileFailed", Message: "staging failed"}))
	})
})
