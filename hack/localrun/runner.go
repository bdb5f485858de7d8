// Package localrun runs the whole system on one machine with no cluster: the
// kube-apiserver and etcd built from Go modules, the operator, the local fake
// providers, and a small runner that plays kubelet for the dispatcher
// Deployments the operator renders. The demo (hack/demo), the end-to-end test
// (test/e2e) and the benchmarks share it.
package localrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// Runner starts one local dispatcher process per replica of every dispatcher
// Deployment, each authenticated as the Deployment's ServiceAccount with a
// token from the TokenRequest API and configured only from the Deployment
// (its env and args), and writes the Deployment's status from the processes'
// health: nothing counts as available that does not answer /readyz.
type Runner struct {
	// Binary is the dispatcher executable.
	Binary string
	// Config is an admin rest.Config for the API server.
	Config *rest.Config
	// DispatcherConfig is where the dispatchers' kubeconfigs point (its host
	// and CA only; the credential is a ServiceAccount token); Config when nil.
	DispatcherConfig *rest.Config
	// Dir holds kubeconfigs and logs.
	Dir string
	// Log receives each process's output lines, prefixed; nil discards.
	Log io.Writer
	// RestartDelay is how long a crashed replica stays down before it is
	// started again, as a kubelet's back-off would.
	RestartDelay time.Duration
	Logger       logr.Logger

	client kubernetes.Interface
	mu     sync.Mutex
	deps   map[string]*deployment // namespace/name
	wg     sync.WaitGroup
}

type deployment struct {
	namespace, name string
	replicas        []*replica
}

// replica is one dispatcher process.
type replica struct {
	index int
	addr  string
	cmd   *exec.Cmd
	ready bool
	// exited is closed when the process ends.
	exited  chan struct{}
	stopped bool
}

// Replica describes a running replica.
type Replica struct {
	Index int
	// URL of its HTTP API.
	URL   string
	Ready bool
	PID   int
}

// Run watches dispatcher Deployments until ctx ends, then stops every
// process it started (SIGTERM, then SIGKILL after the grace period).
func (r *Runner) Run(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(r.Config)
	if err != nil {
		return err
	}
	r.client = cs
	r.deps = map[string]*deployment{}
	if r.RestartDelay == 0 {
		r.RestartDelay = 2 * time.Second
	}
	defer r.stopAll()
	sel := "app.kubernetes.io/name=im-push-dispatcher"
	for ctx.Err() == nil {
		list, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		for i := range list.Items {
			r.sync(ctx, &list.Items[i])
		}
		w, err := cs.AppsV1().Deployments("").Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			continue
		}
		for ev := range w.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok {
				r.sync(ctx, d)
			}
		}
	}
	return nil
}

// sync starts or stops processes to match spec.replicas.
func (r *Runner) sync(ctx context.Context, d *appsv1.Deployment) {
	key := d.Namespace + "/" + d.Name
	r.mu.Lock()
	dep := r.deps[key]
	if dep == nil {
		dep = &deployment{namespace: d.Namespace, name: d.Name}
		r.deps[key] = dep
	}
	want := int(ptr.Deref(d.Spec.Replicas, 1))
	var start []int
	for len(dep.replicas) < want {
		dep.replicas = append(dep.replicas, &replica{index: len(dep.replicas)})
		start = append(start, len(dep.replicas)-1)
	}
	var stop []*replica
	for len(dep.replicas) > want {
		stop = append(stop, dep.replicas[len(dep.replicas)-1])
		dep.replicas = dep.replicas[:len(dep.replicas)-1]
	}
	r.mu.Unlock()
	for _, rep := range stop {
		r.stop(rep)
	}
	for _, i := range start {
		r.wg.Add(1)
		go r.supervise(ctx, d.DeepCopy(), dep, i)
	}
	r.writeStatus(ctx, dep)
}

// supervise keeps replica i of dep running until ctx ends or it is scaled away.
func (r *Runner) supervise(ctx context.Context, d *appsv1.Deployment, dep *deployment, i int) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		r.mu.Lock()
		if i >= len(dep.replicas) || dep.replicas[i].stopped {
			r.mu.Unlock()
			return
		}
		rep := dep.replicas[i]
		r.mu.Unlock()
		if err := r.start(ctx, d, rep); err != nil {
			r.Logger.Error(err, "starting dispatcher replica", "deployment", dep.name, "replica", i)
		} else {
			r.probe(ctx, dep, rep)
		}
		r.mu.Lock()
		rep.ready = false
		stopped := rep.stopped
		r.mu.Unlock()
		r.writeStatus(context.Background(), dep)
		if stopped {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.RestartDelay):
		}
	}
}

// start launches the process for one replica.
func (r *Runner) start(ctx context.Context, d *appsv1.Deployment, rep *replica) error {
	spec := d.Spec.Template.Spec
	kubeconfig, err := r.kubeconfig(ctx, d.Namespace, spec.ServiceAccountName, fmt.Sprintf("%s-%d", d.Name, rep.index))
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := spec.Containers[0]
	args := []string{"--kubeconfig=" + kubeconfig}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--listen=") {
			a = "--listen=" + addr
		}
		args = append(args, a)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + r.Dir}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				v = d.Namespace
			case "metadata.name":
				v = fmt.Sprintf("%s-%d", d.Name, rep.index)
			}
		}
		if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
			// What the kubelet would pass; a resource not set is left out.
			v = resourceField(c.Resources, e.ValueFrom.ResourceFieldRef)
		}
		env = append(env, e.Name+"="+v)
	}
	cmd := exec.Command(r.Binary, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	r.mu.Lock()
	rep.cmd, rep.addr, rep.exited = cmd, addr, exited
	r.mu.Unlock()
	prefix := fmt.Sprintf("[%s-%d] ", d.Name, rep.index)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if r.Log != nil {
				fmt.Fprintln(r.Log, prefix+sc.Text())
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	return nil
}

// probe polls /readyz until the process exits, updating the Deployment's
// status whenever readiness changes, as a kubelet's readiness probe would.
func (r *Runner) probe(ctx context.Context, dep *deployment, rep *replica) {
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-rep.exited:
			return
		case <-ctx.Done():
			<-rep.exited
			return
		case <-tick.C:
		}
		ready := false
		if resp, err := hc.Get("http://" + rep.addr + "/readyz"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
		r.mu.Lock()
		changed := rep.ready != ready
		rep.ready = ready
		r.mu.Unlock()
		if changed {
			r.writeStatus(ctx, dep)
		}
	}
}

// writeStatus writes the Deployment's status from its replicas' readiness.
func (r *Runner) writeStatus(ctx context.Context, dep *deployment) {
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		d, err := r.client.AppsV1().Deployments(dep.namespace).Get(ctx, dep.name, metav1.GetOptions{})
		if err != nil {
			return
		}
		r.mu.Lock()
		var ready int32
		for _, rep := range dep.replicas {
			if rep.ready {
				ready++
			}
		}
		n := int32(len(dep.replicas))
		r.mu.Unlock()
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas, d.Status.UpdatedReplicas = n, n
		d.Status.ReadyReplicas, d.Status.AvailableReplicas = ready, ready
		d.Status.UnavailableReplicas = n - ready
		if _, err := r.client.AppsV1().Deployments(dep.namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err == nil {
			return
		}
	}
}

// kubeconfig writes a kubeconfig holding a fresh ServiceAccount token.
func (r *Runner) kubeconfig(ctx context.Context, namespace, sa, name string) (string, error) {
	tr, err := r.client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", namespace, sa, err)
	}
	target := r.DispatcherConfig
	if target == nil {
		target = r.Config
	}
	path := filepath.Join(r.Dir, name+".kubeconfig")
	return path, WriteKubeconfig(path, target, tr.Status.Token)
}

// WriteKubeconfig writes a kubeconfig for host/CA of cfg with a bearer token
// (or cfg's client certificate when token is empty).
func WriteKubeconfig(path string, cfg *rest.Config, token string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	user := &clientcmdapi.AuthInfo{Token: token}
	if token == "" {
		user = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	}
	kc.AuthInfos["user"] = user
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user", Namespace: "default"}
	kc.CurrentContext = "local"
	return clientcmd.WriteToFile(*kc, path)
}

// Replicas lists the replicas of a tenant's dispatcher.
func (r *Runner) Replicas(namespace, tenant string) []Replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	dep := r.deps[namespace+"/"+tenant+"-dispatcher"]
	if dep == nil {
		return nil
	}
	out := make([]Replica, 0, len(dep.replicas))
	for _, rep := range dep.replicas {
		pid := 0
		if rep.cmd != nil && rep.cmd.Process != nil {
			pid = rep.cmd.Process.Pid
		}
		out = append(out, Replica{Index: rep.index, URL: "http://" + rep.addr, Ready: rep.ready, PID: pid})
	}
	return out
}

// Kill kills replica i of a tenant's dispatcher with SIGKILL, as a crash
// would; the runner starts it again after RestartDelay.
func (r *Runner) Kill(namespace, tenant string, i int) error {
	r.mu.Lock()
	dep := r.deps[namespace+"/"+tenant+"-dispatcher"]
	if dep == nil || i >= len(dep.replicas) || dep.replicas[i].cmd == nil {
		r.mu.Unlock()
		return errors.New("no such replica")
	}
	cmd := dep.replicas[i].cmd
	r.mu.Unlock()
	return cmd.Process.Kill()
}

func (r *Runner) stop(rep *replica) {
	r.mu.Lock()
	rep.stopped = true
	cmd, exited := rep.cmd, rep.exited
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// stopAll stops every replica and waits for the supervisors.
func (r *Runner) stopAll() {
	r.mu.Lock()
	var all []*replica
	for _, dep := range r.deps {
		all = append(all, dep.replicas...)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, rep := range all {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(rep) }()
	}
	wg.Wait()
	r.wg.Wait()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BuildDispatcher compiles the dispatcher binary into dir and returns its path.
func BuildDispatcher(dir, repoRoot string) (string, error) {
	bin := filepath.Join(dir, "dispatcher")
	cmd := exec.Command("go", "build", "-o", bin, "./dispatcher/cmd/dispatcher")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the dispatcher: %w\n%s", err, out)
	}
	return bin, nil
}

// resourceField is the downward API's value of a container resource field
// (requests.memory, limits.cpu, ...) in units of its divisor (default 1,
// rounded up as the kubelet does), or "" when the resource is not set.
func resourceField(r corev1.ResourceRequirements, f *corev1.ResourceFieldSelector) string {
	var q resource.Quantity
	var ok bool
	if name, isLimit := strings.CutPrefix(f.Resource, "limits."); isLimit {
		q, ok = r.Limits[corev1.ResourceName(name)]
	} else if name, isRequest := strings.CutPrefix(f.Resource, "requests."); isRequest {
		q, ok = r.Requests[corev1.ResourceName(name)]
	}
	if !ok {
		return ""
	}
	div := f.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(div.MilliValue()))), 10)
}
