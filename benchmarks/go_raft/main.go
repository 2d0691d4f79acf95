// hashicorp/raft 1.1.2 write throughput and latency, for benchmarks/raft_throughput.py: three
// nodes in this one process on loopback (NetworkTransport over TCP), in-memory stores, 64-byte
// writes issued on the leader. Prints one line: RESULT {json}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

type fsm struct{ n uint64 }

func (f *fsm) Apply(*raft.Log) interface{}       { atomic.AddUint64(&f.n, 1); return nil }
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return &snap{}, nil }
func (f *fsm) Restore(rc io.ReadCloser) error      { return rc.Close() }

type snap struct{}

func (snap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (snap) Release()                          {}

func percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

func main() {
	levels := flag.String("concurrency", "64,256", "writes in flight, comma-separated")
	duration := flag.Float64("duration", 5, "seconds per throughput level")
	sequential := flag.Int("sequential", 2000, "sequential writes")
	host := flag.String("host", "127.0.0.1", "loopback address to listen on")
	flag.Parse()

	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr})
	var nodes []*raft.Raft
	var servers []raft.Server
	var transports []*raft.NetworkTransport
	for i := 0; i < 3; i++ {
		trans, err := raft.NewTCPTransportWithLogger(*host+":0", nil, 3, 10*time.Second, logger)
		if err != nil {
			panic(err)
		}
		transports = append(transports, trans)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprint("n", i)), Address: trans.LocalAddr()})
	}
	for i := 0; i < 3; i++ {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = logger
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(conf, store, store, snaps, transports[i], raft.Configuration{Servers: servers}); err != nil {
			panic(err)
		}
		r, err := raft.NewRaft(conf, &fsm{}, store, store, snaps, transports[i])
		if err != nil {
			panic(err)
		}
		nodes = append(nodes, r)
	}
	var leader *raft.Raft
	for leader == nil {
		for _, r := range nodes {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	value := []byte(strings.Repeat("v", 64))
	if err := leader.Barrier(0).Error(); err != nil {
		panic(err)
	}

	throughput := map[string]map[string]interface{}{}
	for _, field := range strings.Split(*levels, ",") {
		level, _ := strconv.Atoi(field)
		var writes, errors uint64
		deadline := time.Now().Add(time.Duration(*duration * float64(time.Second)))
		start := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < level; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if leader.Apply(value, 0).Error() != nil {
						atomic.AddUint64(&errors, 1)
					} else {
						atomic.AddUint64(&writes, 1)
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		throughput[field] = map[string]interface{}{
			"rate": float64(writes) / elapsed, "writes": writes, "elapsed": elapsed, "errors": errors,
		}
	}
	samples := make([]float64, 0, *sequential)
	for i := 0; i < *sequential; i++ {
		t := time.Now()
		if err := leader.Apply(value, 0).Error(); err != nil {
			panic(err)
		}
		samples = append(samples, time.Since(t).Seconds())
	}
	sort.Float64s(samples)
	sum := 0.0
	for _, s := range samples {
		sum += s
	}
	latency := map[string]float64{
		"p50_ms": percentile(samples, 50) * 1000, "p99_ms": percentile(samples, 99) * 1000,
		"max_ms": samples[len(samples)-1] * 1000, "mean_ms": sum / float64(len(samples)) * 1000,
	}
	out, _ := json.Marshal(map[string]interface{}{"throughput": throughput, "latency": latency})
	fmt.Println("RESULT " + string(out))
	for _, r := range nodes {
		r.Shutdown()
	}
}
