package models

import (
	"errors"
	"fmt"
)

// ErrNotFound is returned when CC names an LRP (or instance) Iris does not have.
var ErrNotFound = errors.New("not found")

// ErrUnauthorized is returned when a caller without a client certificate
// presents no token, or not the one of what it asks for; the API answers
// it with 401.
var ErrUnauthorized = errors.New("unauthorized")

// InvalidRequestError is returned when CC's input cannot be honoured as sent;
// the API answers it with 400 and the message.
type InvalidRequestError struct {
	Message string
}

func (e *InvalidRequestError) Error() string { return e.Message }

// Invalidf builds an InvalidRequestError.
func Invalidf(format string, args ...any) error {
	return &InvalidRequestError{Message: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err (or anything it wraps) is an InvalidRequestError.
func IsInvalid(err error) bool {
	var invalid *InvalidRequestError
	return errors.As(err, &invalid)
}
