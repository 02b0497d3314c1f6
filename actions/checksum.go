package actions

import (
	"bytes"
	"crypto/md5"  //nolint:gosec // Diego's checksum_algorithm md5, an integrity check only
	"crypto/sha1" //nolint:gosec // Diego's checksum_algorithm sha1, an integrity check only
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// ChecksumFailedError is a download whose checksum was invalid or did not
// match; Diego does not retry it (cacheddownloader hash_validator.go).
type ChecksumFailedError struct {
	msg, expected, received string
}

func (e *ChecksumFailedError) Error() string {
	return fmt.Sprintf("Checksum failed: '%s', expected '%s', got '%s'", e.msg, e.expected, e.received)
}

// checksum verifies the bytes written to it against a checksum_algorithm
// and checksum_value of an action, cached dependency or image layer.
type checksum struct {
	algorithm string
	hash      hash.Hash
}

// newChecksum takes md5, sha1 and sha256 as Diego's downloader does, and
// sha512, which image layers may carry (ImageLayer digest_algorithm).
func newChecksum(algorithm string) (*checksum, error) {
	var h hash.Hash
	switch algorithm {
	case "md5":
		h = md5.New() //nolint:gosec
	case "sha1":
		h = sha1.New() //nolint:gosec
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return nil, &ChecksumFailedError{msg: "algorithm invalid", expected: "[md5, sha1, sha256]", received: algorithm}
	}
	return &checksum{algorithm: algorithm, hash: h}, nil
}

func (c *checksum) Write(p []byte) (int, error) { return c.hash.Write(p) }

// verify compares with the expected hex value; surrounding double quotes
// (an ETag-style value) are allowed.
func (c *checksum) verify(value string) error {
	expected, err := hex.DecodeString(strings.Trim(value, `"`))
	if err != nil || len(expected) != c.hash.Size() {
		return &ChecksumFailedError{msg: "checksum missing or invalid", expected: "a valid checksum", received: value}
	}
	if sum := c.hash.Sum(nil); !bytes.Equal(expected, sum) {
		return &ChecksumFailedError{msg: "checksum mismatch", expected: value, received: fmt.Sprintf(`"%x"`, sum)}
	}
	return nil
}
