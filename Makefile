# optimize-backup: make demo runs the sidecar with a local Elasticsearch and demo data;
# make test runs every check and test, the integration tests on a real Elasticsearch.

STATICCHECK_VERSION := v0.8.2
GOBIN := $(CURDIR)/bin
export GOBIN

.PHONY: demo test lint fuzz unit bench record build tools clean

demo: build
	testenv/demo.sh

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o optimize-backup .

## test: formatting, vet, staticcheck, a short fuzz of ID and snapshot-name parsing, then all
## tests with -race against a real Elasticsearch.
test: lint fuzz
	testenv/with-es.sh go test -race -count=1 ./...

## fuzz: ID parsing and the snapshot-name parser, briefly (FUZZTIME=1m for a longer run).
FUZZTIME ?= 10s
fuzz:
	go test -run '^$$' -fuzz '^FuzzBackupID$$' -fuzztime $(FUZZTIME) .
	go test -run '^$$' -fuzz '^FuzzParseSnapshotName$$' -fuzztime $(FUZZTIME) .

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	$(GOBIN)/staticcheck ./...

tools: $(GOBIN)/staticcheck

$(GOBIN)/staticcheck:
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## unit: every test without the real Elasticsearch (golden files replayed through a fake); the
## integration tests skip themselves here (outside CI).
unit:
	go test -race -count=1 ./...

## bench: the speed and memory figures of the design targets (prints numbers, asserts none).
bench: build
	testenv/with-es.sh go test -run '^$$' -bench . -benchmem -count=1 ./...

## record: re-record testdata/es from a real Elasticsearch.
record:
	testenv/with-es.sh go test -count=1 -run 'TestRecord' -record .

clean:
	rm -rf bin optimize-backup testenv/target testenv/run
