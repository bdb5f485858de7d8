// Command bench measures the dispatcher's delivery, the Secrets token store
// and the operator on this machine, and prints a table (and writes JSON) of
// the figures; `make bench` runs it. Nothing is asserted: machines are
// noisy, so each throughput is shown next to a ceiling measured in the same
// run, and -runs repeats the measurements and reports medians.
//
// It starts its own kube-apiserver and etcd (fsync on, unlike envtest's
// default), the operator binary as its own process, the APNs and FCM fakes
// each as its own process, and the dispatcher binary through the local
// runner (hack/localrun) as a kubelet would; load comes from a separate
// process (this program re-run as `bench load`). Everything it starts ends
// with it, Ctrl-C included.
//
//	go run ./hack/bench [-runs 3] [-only delivery,store,operator] [-quick] [-json out.json]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/imcloud/im-push-operator/controllers"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "fakeserver":
		err = runFakeServer(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "load":
		err = runLoad()
	default:
		err = runBench()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	runs                   int
	only                   map[string]bool
	quick, keep            bool
	jsonPath               string
	dispatcherBin, manager string
	tenants                int
	managerQPS             float64
	managerBurst           int
	maxSteal               float64
}

func runBench() error {
	var (
		o    options
		only string
	)
	flag.IntVar(&o.runs, "runs", 1, "Repeat the measurements this many times and report medians.")
	flag.StringVar(&only, "only", "delivery,store,operator", "Sections to run, comma-separated.")
	flag.BoolVar(&o.quick, "quick", false, "Short windows and 20 tenants: a smoke run, not figures to quote.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the working directory (logs, audit log) instead of removing it.")
	flag.StringVar(&o.jsonPath, "json", "bin/bench.json", "Write the figures as JSON here (empty: do not).")
	flag.StringVar(&o.dispatcherBin, "dispatcher", "bin/dispatcher", "Dispatcher binary (make build).")
	flag.StringVar(&o.manager, "manager", "bin/manager", "Operator binary (make build).")
	flag.IntVar(&o.tenants, "tenants", 200, "AppTenants the operator section applies.")
	flag.Float64Var(&o.maxSteal, "max-steal", 5, "Measure a delivery window again (at most twice) when the hypervisor took more than this percentage of the machine's CPU time in it; 100: never.")
	// The shipped defaults (cmd/manager, config/manager), so the figures are the product's.
	flag.Float64Var(&o.managerQPS, "manager-qps", controllers.DefaultKubeAPIQPS, "The operator's --kube-api-qps.")
	flag.IntVar(&o.managerBurst, "manager-burst", controllers.DefaultKubeAPIBurst, "The operator's --kube-api-burst.")
	flag.Parse()
	if flag.NArg() > 0 {
		return errUsage
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(s)] = true
	}
	if o.quick && o.tenants == 200 {
		o.tenants = 20
	}
	for _, bin := range []*string{&o.dispatcherBin, &o.manager} {
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w (run make build)", err)
		}
		*bin = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "im-push-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "working directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logFile, err := os.Create(filepath.Join(dir, "processes.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()

	rep := newReport()
	rep.Runs = o.runs
	rep.Machine = describeMachine()
	rep.Settings["only"] = only
	rep.Settings["quick"] = fmt.Sprint(o.quick)

	err = bench(ctx, o, dir, logFile, rep)
	if len(rep.Figures) > 0 {
		fmt.Println()
		rep.print(os.Stdout)
		if o.jsonPath != "" {
			if jerr := rep.writeJSON(o.jsonPath); jerr != nil {
				err = errors.Join(err, jerr)
			} else {
				fmt.Printf("\nfigures written to %s\n", o.jsonPath)
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		tail(os.Stderr, filepath.Join(dir, "processes.log"), 30)
	}
	return err
}

func bench(ctx context.Context, o options, dir string, logTo io.Writer, rep *report) error {
	step("starting kube-apiserver and etcd (fsync on)")
	cl, err := startCluster(dir)
	if err != nil {
		return err
	}
	defer cl.stop()
	step("starting the operator (%s, --kube-api-qps=%g --kube-api-burst=%d)", filepath.Base(o.manager), o.managerQPS, o.managerBurst)
	mgr, err := cl.startManager(o.manager, filepath.Join(dir, "manager.log"), o.managerQPS, o.managerBurst)
	if err != nil {
		return err
	}
	defer func() { mgr.stop() }()
	rep.Settings["manager"] = fmt.Sprintf("--kube-api-qps=%g --kube-api-burst=%d", o.managerQPS, o.managerBurst)

	t := timing{warmup: time.Second, window: 5 * time.Second, maxSteal: o.maxSteal}
	latencies := []time.Duration{0, 20 * time.Millisecond}
	if o.quick {
		t.warmup, t.window = 500*time.Millisecond, 2*time.Second
	}
	rep.Settings["window"] = t.window.String()
	rep.Settings["warmup"] = t.warmup.String()
	rep.Settings["max-steal"] = fmt.Sprintf("%g%%", t.maxSteal)

	if o.only["delivery"] || o.only["store"] {
		step("installing tenant %s/%s with %d users in %d shards; fakes and dispatcher as their own processes", benchNamespace, benchTenant, 2*usersPerProvider, benchShards)
		sys, err := setupSystem(ctx, cl, o.dispatcherBin, dir, logTo)
		if err != nil {
			return err
		}
		defer sys.stop()
		for run := 1; run <= o.runs; run++ {
			rep.run = run
			if o.only["delivery"] {
				step("delivery, run %d of %d", run, o.runs)
				if err := runDelivery(ctx, sys, rep, t, latencies); err != nil {
					return err
				}
			}
			if o.only["store"] {
				step("token store, run %d of %d", run, o.runs)
				if err := runStore(ctx, sys, rep, t, run); err != nil {
					return err
				}
			}
		}
		sys.stop()
	}
	if o.only["operator"] {
		for run := 1; run <= o.runs; run++ {
			rep.run = run
			step("operator, run %d of %d: %d AppTenants", run, o.runs, o.tenants)
			if mgr, err = runOperator(ctx, cl, mgr, o, dir, rep, run); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemMiB = kb >> 10
		}
	}
	return m
}

// tail prints the last n lines of a log, to show why a run failed.
func tail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	fmt.Fprintf(w, "last lines of %s:\n%s\n", path, strings.Join(lines, "\n"))
}
