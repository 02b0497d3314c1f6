package actions

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
)

// MaxTerminationMessageBytes is what Kubernetes keeps of a container's
// termination message (kubelet: 4096 bytes). The runner's report is that
// message, so it must fit: a task's result may be up to MaxResultBytes
// (10 KiB, as BBS keeps).
const MaxTerminationMessageBytes = 4096

// report is the report file's JSON: a Result whose result may travel
// gzip-compressed and base64-encoded (result_gzip) when it would not fit
// as it is.
type report struct {
	Failed        bool   `json:"failed"`
	FailureReason string `json:"failure_reason"`
	Result        string `json:"result"`
	ResultGzip    string `json:"result_gzip,omitempty"`
}

// EncodeReport is result as the runner reports it, in at most limit bytes
// (0: no limit): plain JSON when it fits; else with the result compressed
// (staging's result.json compresses several times over); and when even
// that does not fit, a failure saying so, since a truncated result would
// be read as a different one. A failure reason too long to fit is
// shortened.
func EncodeReport(result Result, limit int) []byte {
	plain := mustMarshal(report{Failed: result.Failed, FailureReason: result.FailureReason, Result: result.Result})
	if limit <= 0 || len(plain) <= limit {
		return plain
	}
	if result.Result != "" {
		compressed := gzipBase64(result.Result)
		packed := mustMarshal(report{Failed: result.Failed, FailureReason: result.FailureReason, ResultGzip: compressed})
		if len(packed) <= limit {
			return packed
		}
		if !result.Failed {
			result = Result{Failed: true, FailureReason: fmt.Sprintf(
				"result file too large to report from a pod: %d bytes, %d compressed (at most %d bytes of report)",
				len(result.Result), len(compressed), limit)}
		}
	}
	// Only the failure reason can be long now: cut it, in proportion to
	// the excess (escapes make bytes per character vary), until it fits.
	r := report{Failed: result.Failed, FailureReason: result.FailureReason}
	reason := []rune(result.FailureReason)
	for n := len(reason); ; {
		size := len(mustMarshal(r))
		if size <= limit || n == 0 {
			break
		}
		n = max(min(n-1, n*limit/size), 0)
		r.FailureReason = string(reason[:n]) + "..."
	}
	if len(mustMarshal(r)) > limit {
		r.FailureReason = ""
	}
	return mustMarshal(r)
}

// DecodeReport reads a report EncodeReport wrote.
func DecodeReport(data []byte) (Result, error) {
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return Result{}, fmt.Errorf("decoding runner report: %w", err)
	}
	result := Result{Failed: r.Failed, FailureReason: r.FailureReason, Result: r.Result}
	if r.ResultGzip != "" {
		compressed, err := base64.StdEncoding.DecodeString(r.ResultGzip)
		if err != nil {
			return Result{}, fmt.Errorf("decoding runner report's result: %w", err)
		}
		reader, err := gzip.NewReader(bytes.NewReader(compressed))
		if err != nil {
			return Result{}, fmt.Errorf("decompressing runner report's result: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(reader, MaxResultBytes+1))
		if err != nil {
			return Result{}, fmt.Errorf("decompressing runner report's result: %w", err)
		}
		if len(data) > MaxResultBytes {
			return Result{}, fmt.Errorf("runner report's result is larger than %d bytes", MaxResultBytes)
		}
		result.Result = string(data)
	}
	return result, nil
}

func gzipBase64(s string) string {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func mustMarshal(r report) []byte {
	data, err := json.Marshal(r)
	if err != nil {
		panic(err) // strings and a bool always encode
	}
	return data
}
