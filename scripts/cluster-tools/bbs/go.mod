// Diego's BBS and locket for scripts/cluster (the real BBS that Iris's BBS
// front is compared against), in their own module so their dependencies
// (lager, gogo protobuf, pgx, ...) never move the Kubernetes tools' ones nor
// the product's.
module github.com/iris-cf/iris/scripts/cluster-tools/bbs

go 1.26.2

tool (
	code.cloudfoundry.org/bbs/cmd/bbs
	code.cloudfoundry.org/locket/cmd/locket
)

require (
	code.cloudfoundry.org/bbs v1.12.0
	code.cloudfoundry.org/lager/v3 v3.81.0
	code.cloudfoundry.org/locket v1.7.0
)

require (
	code.cloudfoundry.org/bbs/encryption v1.9.0 // indirect
	code.cloudfoundry.org/bbs/format v1.9.0 // indirect
	code.cloudfoundry.org/bbs/models v1.8.0 // indirect
	code.cloudfoundry.org/cfhttp/v2 v2.83.0 // indirect
	code.cloudfoundry.org/clock v1.82.0 // indirect
	code.cloudfoundry.org/debugserver v0.109.0 // indirect
	code.cloudfoundry.org/diego-db-helpers v0.10.0 // indirect
	code.cloudfoundry.org/diego-logging-client v0.119.0 // indirect
	code.cloudfoundry.org/durationjson v0.84.0 // indirect
	code.cloudfoundry.org/go-diodes v0.0.0-20260720065427-59f65622c841 // indirect
	code.cloudfoundry.org/go-loggregator/v9 v9.2.1 // indirect
	code.cloudfoundry.org/routing-info v1.1.0 // indirect
	code.cloudfoundry.org/tlsconfig v0.64.0 // indirect
	code.cloudfoundry.org/workpool v0.0.0-20250911194158-1489753f182e // indirect
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/Masterminds/semver/v3 v3.5.0 // indirect
	github.com/bmizerany/pat v0.0.0-20210406213842-e4b6760bdd6f // indirect
	github.com/go-sql-driver/mysql v1.10.0 // indirect
	github.com/go-task/slim-sprig/v3 v3.0.0 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/google/pprof v0.0.0-20260802141513-ef3492d7dac3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.10.0 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	github.com/nu7hatch/gouuid v0.0.0-20131221200532-179d4d0c4d8d // indirect
	github.com/onsi/ginkgo/v2 v2.32.1 // indirect
	github.com/openzipkin/zipkin-go v0.4.3 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/tedsuo/ifrit v0.0.0-20260418191334-846868129986 // indirect
	github.com/tedsuo/rata v1.0.0 // indirect
	github.com/vito/go-sse v1.1.3 // indirect
	golang.org/x/mod v0.39.0 // indirect
	golang.org/x/net v0.57.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/text v0.40.0 // indirect
	golang.org/x/tools v0.48.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260810153831-ec0a7760b754 // indirect
	google.golang.org/grpc v1.83.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
