package k8s

// UnclaimedSince is exported to the tests.
var UnclaimedSince = unclaimedSince
