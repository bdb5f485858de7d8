package server

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/imcloud/im-push-operator/dispatcher/policy"
)

// BenchmarkPeekRecipients compares admitEarly's scan with decoding the
// same body, for one recipient and for a 500-recipient group message.
func BenchmarkPeekRecipients(b *testing.B) {
	for _, recipients := range []int{1, 500} {
		var to bytes.Buffer
		for r := range recipients {
			if r > 0 {
				to.WriteByte(',')
			}
			fmt.Fprintf(&to, `{"userId":"user-%05d"}`, r)
		}
		body := []byte(`{"id":"n-1","sender":{"id":"bench-sender","displayName":"Bench"},"conversation":{"id":"g-1","type":"group"},"recipients":[` + to.String() + `],"message":{"text":"hello from the benchmark"},"push":{"data":{"sentAt":"1765000000000000000"}}}`)
		b.Run(fmt.Sprintf("peek/%d", recipients), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, n, ok := peekRecipients(body); !ok || n != recipients {
					b.Fatal(n, ok)
				}
			}
		})
		b.Run(fmt.Sprintf("decode/%d", recipients), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var n policy.Notification
				if e := decodeJSON(body, &n, ""); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}
