package delivery

import (
	"container/heap"
	"time"
)

// delayed is one entry of the delay heap: a job to route again at due, or
// (job nil) a check at due whether certificate's pause is over.
type delayed struct {
	due         time.Time
	seq         uint64
	job         *job
	certificate string
}

type delayHeap []delayed

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*h = old[:len(old)-1]
	return x
}

// later puts j back on its provider's queue at due. Waiting jobs sit in the
// heap, not in a worker, so backoff and pauses never hold a worker.
func (e *Engine) later(j *job, due time.Time) {
	e.push(delayed{due: due, job: j})
}

func (e *Engine) push(d delayed) {
	e.heapMu.Lock()
	e.seq++
	d.seq = e.seq
	heap.Push(&e.delays, d)
	e.heapMu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// scheduler runs the delay heap: it holds one timer for the earliest entry
// and re-arms when an earlier one arrives.
func (e *Engine) scheduler() {
	defer e.wg.Done()
	for {
		var fire <-chan time.Time
		var timer Timer
		e.heapMu.Lock()
		now := e.clock.Now()
		var due []delayed
		for len(e.delays) > 0 && !e.delays[0].due.After(now) {
			due = append(due, heap.Pop(&e.delays).(delayed))
		}
		if len(due) == 0 && len(e.delays) > 0 {
			timer = e.clock.TimerAt(e.delays[0].due)
			fire = timer.C()
		}
		e.heapMu.Unlock()
		if len(due) > 0 {
			for _, d := range due {
				if d.job != nil {
					e.route(d.job)
				} else {
					e.resumeCheck(d.certificate, now)
				}
			}
			continue
		}
		select {
		case <-fire:
		case <-e.wake:
			if timer != nil {
				timer.Stop()
			}
		case <-e.stop:
			if timer != nil {
				timer.Stop()
			}
			return
		}
	}
}
