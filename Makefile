# optimize-backup: make demo runs the sidecar with a local Elasticsearch (DB=opensearch: OpenSearch)
# and demo data; make test runs every check and test, the integration tests on a real
# Elasticsearch and a real OpenSearch.

STATICCHECK_VERSION := v0.8.2
GOBIN := $(CURDIR)/bin
export GOBIN

.PHONY: demo test deploy-test lint fuzz unit bench record build image tools clean

## VERSION is what the sidecar reports as sidecarVersion (/actuator/info): the nearest tag, the
## commits since it and the commit (v1.2.0-3-gabc1234), -dirty for uncommitted changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
## IMAGE is the name make image gives the image.
IMAGE ?= optimize-backup:$(VERSION)
## SOURCE_DATE_EPOCH is the commit's time: every timestamp in the image is set to it.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

demo: build
	testenv/demo.sh

build:
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -buildid= -X main.sidecarVersion=$(VERSION)" -o optimize-backup .

## image: the container image, reproducibly (see the Dockerfile); needs Docker with BuildKit
## (docker buildx, Docker 23 or later) and the network to pull the pinned base images.
image:
	@docker buildx version >/dev/null 2>&1 || { echo "make image: needs Docker with the buildx plugin (docker buildx version); install them to build the image"; exit 1; }
	docker buildx build --build-arg VERSION=$(VERSION) --build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
	  --output type=docker,name=$(IMAGE),rewrite-timestamp=true .

## test: formatting, vet, staticcheck, a short fuzz (IDs, snapshot names), then all
## tests with -race against a real Elasticsearch, the integration tests of OPENSEARCH_TESTS again
## against a real OpenSearch 2.19.6 (with-es.sh tells the tests which database runs:
## OPTIMIZE_BACKUP_TEST_DB), and a smoke run of OPENSEARCH3_SMOKE against OpenSearch 3.8.0.
## OPENSEARCH_TESTS: the integration tests that run on OpenSearch too: every route family, two
## installations, restore (plain, replace, dry run, two replicas, restart, delete during it),
## drills, schedules, Optimize's own backups, SigV4, scrape and ?limit costs. The rest prove the sidecar's own logic,
## which is the same on both, or Elasticsearch alone (docs/opensearch.md#tests).
OPENSEARCH_TESTS := BackupLifecycle|Errors|ListAndDelete|CatalogueCosts|IDPairs|SharedRepository|HostileIDs|FailedSnapshot|Part2Deleted|Restore|TwoReplicasOneRestore|RestartMidRestore|DeleteDuringRestore|Drill|ScheduleTwoReplicas|OptimizeMade|SigV4

## OPENSEARCH3_SMOKE are the integration tests make test runs on OpenSearch 3.8.0 too: create,
## get, list and delete, restore with replaceExisting, a drill, and a backup made as Optimize
## makes it (docs/opensearch.md#opensearch-3x).
OPENSEARCH3_SMOKE := ^TestIntegration(BackupLifecycle|ListAndDelete|Restore|Drill|OptimizeMade)$$

test: lint fuzz deploy-test
	testenv/with-es.sh go test -race -count=1 -timeout 20m ./...
	DB=opensearch testenv/with-es.sh go test -race -count=1 -timeout 15m -run '^TestIntegration($(OPENSEARCH_TESTS))$$' .
	DB=opensearch3 testenv/with-es.sh go test -race -count=1 -timeout 10m -run '$(OPENSEARCH3_SMOKE)' .

## deploy-test: the Helm values and the Deployment under deploy/, decoded strictly into the
## Kubernetes API types and checked offline (a Go module of its own, see deploy/go.mod).
deploy-test:
	cd deploy && go vet ./... && go test -count=1 ./...

## fuzz: ID parsing and the snapshot-name parser, briefly (FUZZTIME=1000000x for a longer run).
## The budget is a count of inputs, not a duration: Go 1.26's fuzz coordinator can fail a target
## with a bare "context deadline exceeded" when a duration runs out on a busy machine
## (https://go.dev/issue/75804, fixed in Go 1.27). A count has no deadline to race.
FUZZTIME ?= 30000x
fuzz:
	go test -run '^$$' -fuzz '^FuzzBackupID$$' -fuzztime $(FUZZTIME) .
	go test -run '^$$' -fuzz '^FuzzParseSnapshotName$$' -fuzztime $(FUZZTIME) .

## lint: formatting, vet, staticcheck, and a build for each system the sidecar runs on (the
## binaries are thrown away).
lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	$(GOBIN)/staticcheck ./...
	GOOS=linux go build -o /dev/null .
	GOOS=darwin go build -o /dev/null .
	GOOS=windows go build -o /dev/null .

tools: $(GOBIN)/staticcheck

$(GOBIN)/staticcheck:
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## unit: every test without the real Elasticsearch (golden files replayed through a fake); the
## integration tests skip themselves here (outside CI).
unit: deploy-test
	go test -race -count=1 ./...

## bench: every figure of issue 13, the sidecar alternately with Elasticsearch doing the same
## work, on a node of its own (port 9230, so never make test's 9270), written to docs/BENCHMARKS.md;
## prints and records, asserts nothing; not part of make test or CI. The node's data and
## repositories live on tmpfs: on disk, each snapshot's cluster-state fsyncs make the 20,000
## snapshots of the growth figures take over 25 minutes. About 5 minutes on 2 cores; the first
## run takes about 20, as it makes a repository of 10,000 backups (kept in testenv/target).
BENCH_RUN_DIR ?= /dev/shm/optimize-backup-bench-9230
bench: build
	ES_HTTP_PORT=9230 ES_RUN_DIR=$(BENCH_RUN_DIR) testenv/with-es.sh go test -tags bench -run '^TestBench$$' -count=1 -timeout 30m -v .

## record: re-record testdata/es from a real Elasticsearch, and testdata/opensearch from a real
## OpenSearch.
record:
	testenv/with-es.sh go test -count=1 -run 'TestRecord' -record .
	DB=opensearch testenv/with-es.sh go test -count=1 -run 'TestRecord(Root|OpenSearch)$$' -record .

clean:
	rm -rf bin optimize-backup testenv/target testenv/run
