// Tools module for the real node of scripts/cluster: its sandbox (pause)
// image. containerd, runc and the CNI plugins are `go install`ed at pinned
// versions (each with its own go.mod), so they are not required here.
module github.com/iris-cf/iris/scripts/cluster-tools/node

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
