package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/imcloud/im-push-operator/controllers"
	"github.com/imcloud/im-push-operator/hack/localrun"
	"github.com/imcloud/im-push-operator/internal/testenv"
)

// managerUser is the identity the operator runs as, so the audit log can
// tell its requests from everyone else's.
const managerUser = "im-push-bench-manager"

// auditPolicy records the operator's mutating requests, nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + managerUser + `"]
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// cluster is the API server and its own etcd, with fsync on, for the run.
type cluster struct {
	env    *envtest.Environment
	cfg    *rest.Config
	client client.WithWatch
	dir    string
	// auditLog is the API server's audit log of the operator's writes.
	auditLog string
	// managerKubeconfig authenticates as managerUser.
	managerKubeconfig string
	adminKubeconfig   string
	etcdMetrics       string
	http              *http.Client
}

func startCluster(dir string) (_ *cluster, err error) {
	c := &cluster{dir: dir, auditLog: filepath.Join(dir, "audit.log")}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	if c.env, err = testenv.Environment(true); err != nil {
		return nil, err
	}
	// envtest passes --unsafe-no-fsync to etcd; the token store's figures
	// mean nothing without fsync, so it is left out.
	c.env.ControlPlane.Etcd = &envtest.Etcd{}
	c.env.ControlPlane.Etcd.Configure().Disable("unsafe-no-fsync")
	c.env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policy).
		Set("audit-log-path", c.auditLog).
		Set("audit-log-mode", "blocking").
		// envtest's /24 holds 254 Services: -runs 2 with 200 tenants (one
		// dispatcher Service each, none deleted between runs) exhausted it.
		Set("service-cluster-ip-range", "10.0.0.0/16")
	if c.cfg, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.env.Stop()
		}
	}()
	c.etcdMetrics = c.env.ControlPlane.Etcd.URL.String() + "/metrics"
	// The harness's own client must not be what limits the operator section.
	c.cfg.QPS, c.cfg.Burst = 1000, 2000
	if c.client, err = client.NewWithWatch(c.cfg, client.Options{Scheme: controllers.Scheme}); err != nil {
		return nil, err
	}
	user, err := c.env.AddUser(envtest.User{Name: managerUser, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	c.managerKubeconfig = filepath.Join(dir, "manager.kubeconfig")
	if err := localrun.WriteKubeconfig(c.managerKubeconfig, user.Config(), ""); err != nil {
		return nil, err
	}
	c.adminKubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := localrun.WriteKubeconfig(c.adminKubeconfig, c.cfg, ""); err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(c.cfg)
	if err != nil {
		return nil, err
	}
	c.http = hc
	return c, nil
}

func (c *cluster) stop() error { return c.env.Stop() }

// metricSums reads a Prometheus text endpoint and sums each wanted family's
// samples (the _sum of histograms) whose labels all match.
func metricSums(ctx context.Context, hc *http.Client, url string, want map[string]map[string]string) (map[string]float64, error) {
	families, err := scrape(ctx, hc, url)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, labels := range want {
		for _, m := range matching(families, name, labels) {
			switch {
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name] += m.GetHistogram().GetSampleSum()
			case m.Untyped != nil:
				out[name] += m.GetUntyped().GetValue()
			}
		}
	}
	return out, nil
}

// scrape reads and parses a Prometheus text endpoint.
func scrape(ctx context.Context, hc *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return families, nil
}

// matching is the samples of family name whose labels all match labels.
func matching(families map[string]*dto.MetricFamily, name string, labels map[string]string) []*dto.Metric {
	var out []*dto.Metric
	fam := families[name]
	if fam == nil {
		return nil
	}
metrics:
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue metrics
			}
		}
		out = append(out, m)
	}
	return out
}

// buckets is a histogram's cumulative counts by upper bound (ascending, +Inf
// left out) and its count of observations.
type buckets struct {
	bounds, counts []float64
	total          float64
}

// histogramBuckets sums the buckets of the histograms name with labels (all
// with the same bounds); none matching is no observations.
func histogramBuckets(families map[string]*dto.MetricFamily, name string, labels map[string]string) (buckets, error) {
	var b buckets
	for i, m := range matching(families, name, labels) {
		h := m.GetHistogram()
		if i == 0 {
			for _, bk := range h.GetBucket() {
				b.bounds = append(b.bounds, bk.GetUpperBound())
			}
			b.counts = make([]float64, len(b.bounds))
		}
		if len(h.GetBucket()) != len(b.bounds) {
			return buckets{}, fmt.Errorf("histograms %s have different buckets", name)
		}
		for k, bk := range h.GetBucket() {
			b.counts[k] += float64(bk.GetCumulativeCount())
		}
		b.total += float64(h.GetSampleCount())
	}
	return b, nil
}

// over is how many observations were above bound, which must be one of the
// bucket bounds (compared within rounding: it may be a sum).
func (b buckets) over(bound float64) (float64, error) {
	if b.total == 0 {
		return 0, nil
	}
	for k, upper := range b.bounds {
		if math.Abs(upper-bound) < 1e-9 {
			return b.total - b.counts[k], nil
		}
	}
	return 0, fmt.Errorf("no bucket bound %g", bound)
}

// minus is b's observations since a, an earlier reading of the same
// histogram (or none: the zero buckets).
func (b buckets) minus(a buckets) buckets {
	d := buckets{bounds: b.bounds, counts: slices.Clone(b.counts), total: b.total - a.total}
	for k := range a.counts {
		d.counts[k] -= a.counts[k]
	}
	return d
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile does:
// linearly within the bucket the rank falls in (from 0 for the first); past
// the last bound, that bound (the quantile is at least that). b must have
// observations.
func (b buckets) quantile(q float64) float64 {
	rank := q * b.total
	lower, below := 0.0, 0.0
	for k, upper := range b.bounds {
		if b.counts[k] >= rank {
			in := b.counts[k] - below
			if in <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/in
		}
		lower, below = upper, b.counts[k]
	}
	return lower
}

// writeCounters are the figures compared before and after a token-store
// window: request bytes of Secret updates at the API server, and bytes etcd
// appended to its write-ahead log (fsynced).
type writeCounters struct {
	apiBytes, apiUpdates, walBytes float64
}

func (c *cluster) writeCounters(ctx context.Context) (writeCounters, error) {
	api, err := metricSums(ctx, c.http, strings.TrimRight(c.cfg.Host, "/")+"/metrics", map[string]map[string]string{
		"apiserver_request_body_size_bytes": {"resource": "secrets", "verb": "update"},
		"apiserver_request_total":           {"resource": "secrets", "verb": "PUT"},
	})
	if err != nil {
		return writeCounters{}, err
	}
	etcd, err := metricSums(ctx, http.DefaultClient, c.etcdMetrics, map[string]map[string]string{
		"etcd_disk_wal_write_bytes_total": {},
	})
	if err != nil {
		return writeCounters{}, err
	}
	return writeCounters{
		apiBytes:   api["apiserver_request_body_size_bytes"],
		apiUpdates: api["apiserver_request_total"],
		walBytes:   etcd["etcd_disk_wal_write_bytes_total"],
	}, nil
}

// auditEvent is the part of an audit log line the harness reads.
type auditEvent struct {
	Verb      string                    `json:"verb"`
	User      struct{ Username string } `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	Stage                    string    `json:"stage"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// auditWrites counts the operator's mutating requests received at or after
// since, by "verb resource[/subresource]".
func (c *cluster) auditWrites(since time.Time) (map[string]int, int, error) {
	f, err := os.Open(c.auditLog)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	out := map[string]int{}
	total := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Stage != "ResponseComplete" || e.User.Username != managerUser {
			continue
		}
		if e.RequestReceivedTimestamp.Before(since) {
			continue
		}
		key := e.Verb + " " + e.ObjectRef.Resource
		if e.ObjectRef.Subresource != "" {
			key += "/" + e.ObjectRef.Subresource
		}
		out[key]++
		total++
	}
	return out, total, sc.Err()
}

// managerProcess is bin/manager running as its own process.
type managerProcess struct {
	cmd         *exec.Cmd
	metricsAddr string
	exited      chan struct{}
}

// startManager runs the operator binary as managerUser with the given API
// client QPS and burst; its log goes to logPath.
func (c *cluster) startManager(binary, logPath string, qps float64, burst int) (*managerProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &managerProcess{metricsAddr: "127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{})}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	m.cmd = child(exec.Command(binary,
		"--kubeconfig="+c.managerKubeconfig,
		"--metrics-bind-address="+m.metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address=0",
		"--kube-api-qps="+strconv.FormatFloat(qps, 'f', -1, 64), "--kube-api-burst="+strconv.Itoa(burst),
		"--dispatcher-image=local/im-push-dispatcher:bench",
	))
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() { _ = m.cmd.Wait(); logFile.Close(); close(m.exited) }()
	return m, nil
}

func (m *managerProcess) pid() int { return m.cmd.Process.Pid }

// stop ends the manager with SIGTERM (SIGKILL after 10 s).
func (m *managerProcess) stop() {
	if m == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// reconciles reads controller-runtime's reconcile counter and queue depth
// for one controller from the manager's metrics.
func (m *managerProcess) reconciles(ctx context.Context, controller string) (total, depth float64, err error) {
	v, err := metricSums(ctx, http.DefaultClient, "http://"+m.metricsAddr+"/metrics", map[string]map[string]string{
		"controller_runtime_reconcile_total": {"controller": controller},
		"workqueue_depth":                    {"name": controller},
	})
	return v["controller_runtime_reconcile_total"], v["workqueue_depth"], err
}

// startProcess starts one of this program's subcommands as its own process
// and returns it with a reader of its standard output.
func startProcess(ctx context.Context, logTo io.Writer, args ...string) (*exec.Cmd, *bufio.Reader, io.WriteCloser, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := child(exec.CommandContext(ctx, self, args...))
	cmd.Stderr = logTo
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, bufio.NewReader(out), in, nil
}

// runJob runs one load job in a separate load process and returns its result.
func runJob(ctx context.Context, logTo io.Writer, job loadJob) (*loadResult, error) {
	cmd, out, in, err := startProcess(ctx, logTo, "load")
	if err != nil {
		return nil, err
	}
	err = json.NewEncoder(in).Encode(job)
	in.Close()
	var res loadResult
	if err == nil {
		err = json.NewDecoder(out).Decode(&res)
	}
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return nil, fmt.Errorf("load job %s: %w", job.Kind, err)
	}
	return &res, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
