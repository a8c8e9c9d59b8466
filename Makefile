# optimize-backup: make demo runs the sidecar with a local Elasticsearch and demo data;
# make test runs every check and test, the integration tests on a real Elasticsearch.

STATICCHECK_VERSION := v0.8.2
GOBIN := $(CURDIR)/bin
export GOBIN

.PHONY: demo test lint unit bench record build tools clean

demo: build
	testenv/demo.sh

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o optimize-backup .

## test: formatting, vet, staticcheck, then all tests with -race against a real Elasticsearch.
test: lint
	testenv/with-es.sh go test -race -count=1 ./...

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	$(GOBIN)/staticcheck ./...

tools: $(GOBIN)/staticcheck

$(GOBIN)/staticcheck:
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## unit: the tests that need no Elasticsearch (golden files replayed through a fake).
unit:
	go test -race -count=1 -run 'TestAPI|TestBackupState|TestConfig|TestList|TestConcurrent|TestElasticsearchUnreachable' ./...

## bench: the speed and memory figures of the design targets (prints numbers, asserts none).
bench: build
	testenv/with-es.sh go test -run '^$$' -bench . -benchmem -count=1 ./...

## record: re-record testdata/es from a real Elasticsearch.
record:
	testenv/with-es.sh go test -count=1 -run TestRecord -record .

clean:
	rm -rf bin optimize-backup testenv/target testenv/run
