# The two commands a fresh machine needs (see README):
#   make run   - Iris on the local real cluster (built and started as needed)
#   make test  - unit and integration tests against their own local cluster
.PHONY: run test unit build bench vet generate cluster-down image

build:
	go build -o bin/iris ./cmd/iris

run:
	scripts/run-local

test:
	scripts/test

# Unit tests only: no cluster needed.
unit:
	go test $$(go list ./... | grep -v /integration)

vet:
	go vet ./...

generate:
	go generate ./...

# The container image, built and pushed without Docker (see README):
#   make image IMAGE=registry.example.com/cf/iris:1.0
image:
	@test -n "$(IMAGE)" || { echo "set IMAGE=registry/repository:tag" >&2; exit 1; }
	go run ./scripts/image -push "$(IMAGE)" -revision "$$(git rev-parse HEAD)"

# Benchmarks are never part of `make test`; see scripts/bench.
bench:
	scripts/bench/run

cluster-down:
	scripts/cluster down
