package k8s

// UnclaimedSince is exported to the tests.
var UnclaimedSince = unclaimedSince

// LeanAppObject is the app informers' transform, exported to the tests.
func LeanAppObject(obj any) (any, error) { return newLeaner().transform(obj) }

// NewLeanTransform is one transform, sharing across the objects it sees.
func NewLeanTransform() func(any) (any, error) { return newLeaner().transform }
