// Package deploy checks the Kubernetes manifests under deploy/ offline: the Helm values for the
// Camunda chart and the plain Deployment decode strictly into the Kubernetes API types, and
// run the sidecar the way an operator of a sidecar expects (probes, a locked-down container,
// the same Elasticsearch settings and secrets as Optimize, the admin token from a Secret, and
// only environment variables the sidecar reads). It is a module of its own, so the sidecar's
// go.mod does not carry the Kubernetes API.
package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// sidecarName is the sidecar's container name in both manifests.
const sidecarName = "optimize-backup"

// The sidecar serves on the management port; Optimize answers readiness on its HTTP port (the
// Camunda chart's probe: port http 8090, optimize.contextPath "" and probePath /api/readyz).
const (
	sidecarPort          = 8092
	optimizeHTTPPort     = 8090
	optimizeReadyPath    = "/api/readyz"
	measuredPeakRSSBytes = 18.8 * 1024 * 1024 // BenchmarkProcess, 64 concurrent clients (float: 18.8 MiB)
)

// The variables that carry Optimize's Elasticsearch settings: the sidecar must get the same
// value (or secret) as Optimize for each.
var sharedWithOptimize = []string{
	"OPTIMIZE_ELASTICSEARCH_HOST",
	"OPTIMIZE_ELASTICSEARCH_HTTP_PORT",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_ENABLED",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD",
	"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX",
}

// chartValues is the part of the Camunda chart's values that values-optimize-backup.yaml sets.
// Decoding is strict: a key the file sets must be one of these, so a typo (or a key of another
// chart version) fails instead of being silently ignored by Helm.
type chartValues struct {
	Global struct {
		Elasticsearch struct {
			Enabled  bool `json:"enabled"`
			External bool `json:"external"`
			URL      struct {
				Protocol string `json:"protocol"`
				Host     string `json:"host"`
				Port     int    `json:"port"`
			} `json:"url"`
			Auth struct {
				Username string `json:"username"`
				Secret   struct {
					ExistingSecret    string `json:"existingSecret"`
					ExistingSecretKey string `json:"existingSecretKey"`
				} `json:"secret"`
			} `json:"auth"`
		} `json:"elasticsearch"`
	} `json:"global"`
	Elasticsearch struct {
		Enabled bool `json:"enabled"`
	} `json:"elasticsearch"`
	Optimize struct {
		Env          []corev1.EnvVar    `json:"env"`
		ExtraVolumes []corev1.Volume    `json:"extraVolumes"`
		Sidecars     []corev1.Container `json:"sidecars"`
	} `json:"optimize"`
}

// decodeStrict reads a YAML file into v, refusing unknown fields and duplicate keys.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s does not decode strictly: %v", path, err)
	}
}

// sidecarEnvNames are the environment variables the sidecar reads: the env tags of its config
// struct, read from ../config.go's source (the sidecar is package main: it cannot be imported).
func sidecarEnvNames(t *testing.T) []string {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "config.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(file, func(n ast.Node) bool {
		field, ok := n.(*ast.Field)
		if !ok || field.Tag == nil {
			return true
		}
		tag, err := strconv.Unquote(field.Tag.Value)
		if err != nil {
			t.Fatalf("config.go: cannot read tag %s", field.Tag.Value)
		}
		if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ","); name != "" {
			names = append(names, name)
		}
		return true
	})
	if len(names) < 20 || !slices.Contains(names, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME") {
		t.Fatalf("read %d variables from config.go (%v); want its config struct's env tags", len(names), names)
	}
	return names
}

// findContainer returns the container with this name.
func findContainer(t *testing.T, containers []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// envOf returns the container's variable with this name, and whether it is set.
func envOf(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// envValue returns the plain value of a variable the container must set.
func envValue(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	e, ok := envOf(c, name)
	if !ok || e.ValueFrom != nil {
		t.Fatalf("container %s: got %s %+v; want it set to a plain value", c.Name, name, e)
	}
	return e.Value
}

// checkSidecar checks what both manifests must give the sidecar container: only variables it
// reads, each once; probes on its liveness and readiness routes; a locked-down security
// context; resources from the measured memory; the password and admin token from Secrets
// (never a literal value); OPTIMIZE_HEALTH_URL at Optimize's readiness endpoint in the pod.
func checkSidecar(t *testing.T, c corev1.Container, volumes []corev1.Volume) {
	t.Helper()
	known := sidecarEnvNames(t)
	seen := map[string]bool{}
	for _, e := range c.Env {
		if !slices.Contains(known, e.Name) {
			t.Errorf("sidecar env %s is not read by the sidecar (config.go); remove it or fix its name", e.Name)
		}
		if seen[e.Name] {
			t.Errorf("sidecar env %s is set twice; Kubernetes keeps the last one silently", e.Name)
		}
		seen[e.Name] = true
	}
	if c.EnvFrom != nil {
		t.Errorf("sidecar has envFrom %v; want every variable listed, so each is checked", c.EnvFrom)
	}
	for _, name := range []string{"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME", "OPTIMIZE_ELASTICSEARCH_HOST", "MANAGEMENT_SERVER_PORT", "OPTIMIZE_HEALTH_URL"} {
		envValue(t, c, name)
	}
	if _, ok := envOf(c, "OPTIMIZE_BACKUP_LISTEN_ADDRESS"); ok {
		t.Errorf("sidecar sets OPTIMIZE_BACKUP_LISTEN_ADDRESS; the kubelet probes the pod IP, so it must listen on every interface")
	}
	if port := envValue(t, c, "MANAGEMENT_SERVER_PORT"); port != strconv.Itoa(sidecarPort) {
		t.Errorf("sidecar MANAGEMENT_SERVER_PORT is %s; want %d, where Optimize's backup API is called", port, sidecarPort)
	}

	// Probes: the routes that are UP whenever the process serves, on the sidecar's port.
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/actuator/health/liveness"}, {"readiness", c.ReadinessProbe, "/actuator/health/readiness"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("sidecar has no %s httpGet probe", p.kind)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(t, c, p.probe.HTTPGet.Port) != sidecarPort {
			t.Errorf("sidecar %s probe is %s on port %s; want %s on %d", p.kind, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path, sidecarPort)
		}
		if p.probe.TimeoutSeconds < 1 || p.probe.PeriodSeconds < 1 || p.probe.FailureThreshold < 2 {
			t.Errorf("sidecar %s probe %+v; want explicit period, timeout and a failure threshold of at least 2", p.kind, p.probe)
		}
	}

	// Security context: non-root, read-only root, no privilege escalation, no capabilities.
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("sidecar has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("sidecar runAsNonRoot is not true")
	case sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("sidecar runAsUser %v; want the image's non-root uid 65532", sc.RunAsUser)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("sidecar readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("sidecar allowPrivilegeEscalation is not false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("sidecar is privileged")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("sidecar capabilities %+v; want drop [ALL] and none added", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("sidecar seccompProfile %+v; want RuntimeDefault", sc.SeccompProfile)
	}

	// Resources: a request above the measured peak, a limit above the request.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if m := req.Memory(); m.IsZero() || float64(m.Value()) < measuredPeakRSSBytes {
		t.Errorf("sidecar memory request %v; want at least the measured peak of 18.8 MiB", m)
	}
	if req.Cpu().IsZero() {
		t.Errorf("sidecar has no CPU request")
	}
	if lim.Memory().IsZero() || lim.Memory().Cmp(*req.Memory()) < 0 || lim.Memory().Cmp(resource.MustParse("64Mi")) < 0 {
		t.Errorf("sidecar memory limit %v; want one of at least 64Mi (listing many backups), above the request", lim.Memory())
	}

	// The image: pinned, never a moving tag.
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
		t.Errorf("sidecar image %q; want one pinned by tag or digest", c.Image)
	}

	// Secrets: the password from a secretKeyRef, the admin token as a file from a Secret volume.
	if e, _ := envOf(c, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD"); e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.Value != "" {
		t.Errorf("sidecar Elasticsearch password %+v; want it from a secretKeyRef", e)
	}
	if _, ok := envOf(c, "OPTIMIZE_BACKUP_ADMIN_TOKEN"); ok {
		t.Errorf("sidecar sets OPTIMIZE_BACKUP_ADMIN_TOKEN; want OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE from a mounted Secret")
	}
	checkSecretFile(t, c, volumes, envValue(t, c, "OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE"))
	if ca, ok := envOf(c, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES"); ok {
		checkSecretFile(t, c, volumes, ca.Value)
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("sidecar mounts %s writable; it writes nothing, so mount it readOnly", m.MountPath)
		}
	}

	// OPTIMIZE_HEALTH_URL: Optimize's readiness endpoint, in the same pod.
	u, err := url.Parse(envValue(t, c, "OPTIMIZE_HEALTH_URL"))
	if err != nil || u.Scheme != "http" || u.Hostname() != "localhost" || u.Port() != strconv.Itoa(optimizeHTTPPort) || u.Path != optimizeReadyPath {
		t.Errorf("sidecar OPTIMIZE_HEALTH_URL %v; want http://localhost:%d%s, Optimize's readiness endpoint in the pod", u, optimizeHTTPPort, optimizeReadyPath)
	}
}

// containerPort resolves a probe's port (a number or a port name of the container).
func containerPort(t *testing.T, c corev1.Container, port intstr.IntOrString) int {
	t.Helper()
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort)
		}
	}
	t.Errorf("container %s has no port named %s", c.Name, port.StrVal)
	return 0
}

// checkSecretFile checks that path lies in a read-only mount of the container whose volume is
// a Secret of the pod.
func checkSecretFile(t *testing.T, c corev1.Container, volumes []corev1.Volume, path string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		for _, v := range volumes {
			if v.Name == m.Name {
				if v.Secret == nil || v.Secret.SecretName == "" {
					t.Errorf("%s is on volume %s, which is not a Secret", path, v.Name)
				}
				if !m.ReadOnly {
					t.Errorf("%s is on a writable mount", path)
				}
				return
			}
		}
		t.Errorf("%s is on mount %s, whose volume %s the pod does not have", path, m.MountPath, m.Name)
		return
	}
	t.Errorf("sidecar reads %s, which is on none of its volume mounts", path)
}

// TestHelmValues checks deploy/helm/values-optimize-backup.yaml: it decodes strictly into the
// chart's keys and Kubernetes' types; the sidecar passes checkSidecar; its Elasticsearch
// settings are the ones the chart gives Optimize (global.elasticsearch), its repository and
// index prefix the same entries as Optimize's env (YAML anchors); and Optimize's own
// management server is moved off the sidecar's port.
func TestHelmValues(t *testing.T) {
	var v chartValues
	decodeStrict(t, filepath.Join("helm", "values-optimize-backup.yaml"), &v)
	if len(v.Optimize.Sidecars) != 1 {
		t.Fatalf("got %d sidecars; want the one optimize-backup", len(v.Optimize.Sidecars))
	}
	c := findContainer(t, v.Optimize.Sidecars, sidecarName)
	checkSidecar(t, c, v.Optimize.ExtraVolumes)

	es := v.Global.Elasticsearch
	if !es.Enabled || !es.External || v.Elasticsearch.Enabled {
		t.Errorf("got global.elasticsearch enabled=%v external=%v and elasticsearch.enabled=%v; want Optimize on the external Elasticsearch the sidecar uses", es.Enabled, es.External, v.Elasticsearch.Enabled)
	}
	want := map[string]string{
		"OPTIMIZE_ELASTICSEARCH_HOST":                      es.URL.Host,
		"OPTIMIZE_ELASTICSEARCH_HTTP_PORT":                 strconv.Itoa(es.URL.Port),
		"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_ENABLED":       strconv.FormatBool(es.URL.Protocol == "https"),
		"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME": es.Auth.Username,
	}
	for name, w := range want {
		if got := envValue(t, c, name); got != w || w == "" {
			t.Errorf("sidecar %s is %q; want %q, as global.elasticsearch gives Optimize", name, got, w)
		}
	}
	password, _ := envOf(c, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD")
	if ref := password.ValueFrom.SecretKeyRef; ref.Name != es.Auth.Secret.ExistingSecret || ref.Key != es.Auth.Secret.ExistingSecretKey {
		t.Errorf("sidecar password from secret %s key %s; want Optimize's, %s key %s", ref.Name, ref.Key, es.Auth.Secret.ExistingSecret, es.Auth.Secret.ExistingSecretKey)
	}
	optimize := corev1.Container{Name: "optimize", Env: v.Optimize.Env}
	for _, name := range []string{"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX"} {
		if got, want := envValue(t, c, name), envValue(t, optimize, name); got != want {
			t.Errorf("sidecar %s is %q; want Optimize's %q", name, got, want)
		}
	}
	if port := envValue(t, optimize, "MANAGEMENT_SERVER_PORT"); port == strconv.Itoa(sidecarPort) {
		t.Errorf("Optimize's MANAGEMENT_SERVER_PORT is %s, the sidecar's port; move Optimize's management server elsewhere", port)
	}
	if c.Ports != nil {
		t.Errorf("sidecar declares ports %v; the chart's Optimize container already declares 8092 (management), and a second declaration only draws a duplicate-port warning", c.Ports)
	}
}

// TestKubernetesDeployment checks deploy/kubernetes/optimize-with-backup.yaml: it decodes
// strictly into a Deployment; the sidecar passes checkSidecar; every Elasticsearch setting the
// two containers share has exactly the same value or secret in both; Optimize's management
// server does not take the sidecar's port; OPTIMIZE_HEALTH_URL is where Optimize's own
// readiness probe looks.
func TestKubernetesDeployment(t *testing.T) {
	var d appsv1.Deployment
	decodeStrict(t, filepath.Join("kubernetes", "optimize-with-backup.yaml"), &d)
	if d.APIVersion != "apps/v1" || d.Kind != "Deployment" {
		t.Fatalf("got %s %s; want apps/v1 Deployment", d.APIVersion, d.Kind)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("got replicas %v, strategy %q; want one Optimize, replaced with Recreate", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template
	for k, v := range d.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod's labels %v", k, v, pod.Labels)
		}
	}
	if psc := pod.Spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("pod securityContext %+v; want runAsNonRoot", psc)
	}
	c := findContainer(t, pod.Spec.Containers, sidecarName)
	checkSidecar(t, c, pod.Spec.Volumes)
	optimize := findContainer(t, pod.Spec.Containers, "optimize")
	for _, name := range sharedWithOptimize {
		got, ok1 := envOf(c, name)
		want, ok2 := envOf(optimize, name)
		if !ok1 || !ok2 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: sidecar %+v, Optimize %+v; want both set, the same", name, got, want)
		}
	}
	if port := envValue(t, optimize, "MANAGEMENT_SERVER_PORT"); port == strconv.Itoa(sidecarPort) {
		t.Errorf("Optimize's MANAGEMENT_SERVER_PORT is %s, the sidecar's port; move Optimize's management server elsewhere", port)
	}
	for _, p := range optimize.Ports {
		if p.ContainerPort == sidecarPort {
			t.Errorf("Optimize declares port %d, the sidecar's", sidecarPort)
		}
	}
	ready := optimize.ReadinessProbe
	if ready == nil || ready.HTTPGet == nil || ready.HTTPGet.Path != optimizeReadyPath || containerPort(t, optimize, ready.HTTPGet.Port) != optimizeHTTPPort {
		t.Errorf("Optimize's readiness probe %+v; want %s on %d, where the sidecar's OPTIMIZE_HEALTH_URL looks", ready, optimizeReadyPath, optimizeHTTPPort)
	}
}

// TestStrictDecodingRefusesTypos checks that the strict decoding the tests rely on does fail:
// a misspelt field in a container, and a chart key the values type does not know, are errors.
func TestStrictDecodingRefusesTypos(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		into any
	}{
		{"container field", "name: x\nimage: y\nlivenesProbe: {}\n", &corev1.Container{}},
		{"chart key", "optimize:\n  sidecar: []\n", &chartValues{}},
		{"duplicate key", "optimize:\n  env: []\n  env: []\n", &chartValues{}},
	} {
		if err := yaml.UnmarshalStrict([]byte(tc.yaml), tc.into); err == nil {
			t.Errorf("%s: %q decoded; want an error", tc.name, tc.yaml)
		}
	}
}
