package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/fnv"
	"reflect"
	"strings"
	"testing"
	"time"
)

// recordSeeds are user records as encoding/json writes them and as a hand
// or an older dispatcher might: the store reads them with the v2 decoder,
// which must read each exactly as encoding/json does.
var recordSeeds = []string{
	`{"v":1}`,
	`{"v":1,"devices":[{"id":"phone","bindings":[{"certificateName":"apns","token":"00ff","boundAt":"2026-12-06T09:00:00.123456789Z"}],"updatedAt":"2026-12-06T09:00:00Z"}]}`,
	`{"v":1,"devices":[{"id":"a","bindings":[{"certificateName":"huawei","token":"t1","boundAt":"2026-01-02T03:04:05+08:00"},{"certificateName":"fcm","token":"t2","boundAt":"2026-01-02T03:04:06Z"}],"updatedAt":"2026-01-02T03:04:06Z"},{"id":"b","bindings":[],"updatedAt":"0001-01-01T00:00:00Z"}],` +
		`"settings":{"mode":"MentionsOnly","conversations":{"g-1":"None","c-2":"All"},"quietHours":{"start":"22:00","end":"07:30","timeZone":"Asia/Shanghai","mentionsBreakThrough":true},"language":"zh-Hant"}}`,
	`{"v":1,"settings":{"mode":"None"},"unknown":{"nested":[1,2,3]}}`,
	`{"v":1,"devices":null,"settings":{"conversations":null,"quietHours":null}}`,
	// What encoding/json tolerates: other letter case, repeated names (the
	// last wins), invalid UTF-8 in a string (replaced), a one-digit hour.
	`{"V":1,"Devices":[{"ID":"phone","BINDINGS":[{"CertificateName":"apns","Token":"x","BoundAt":"2026-12-06T09:00:00Z"}]}]}`,
	`{"v":1,"devices":[{"id":"first","id":"second"}],"v":1}`,
	"{\"v\":1,\"devices\":[{\"id\":\"bad\xff\xfeutf8\"}]}",
	`{"v":1,"devices":[{"id":"p","bindings":[{"boundAt":"2026-12-06T9:00:00Z"}]}]}`,
	// The form applyOps writes, which canonicalUser reads, and near misses
	// it must leave to the general decoder.
	`{"v":1,"devices":[{"id":"phone","bindings":[{"certificateName":"apns","token":"00ff","boundAt":"2026-12-06T09:00:00.5+08:00"}],"updatedAt":"2026-12-06T09:00:00Z"}],"settings":{}}`,
	`{"v":1,"devices":[{"id":"a","bindings":null,"updatedAt":"2026-12-06T09:00:00Z"},{"id":"b","bindings":[],"updatedAt":"2026-12-06T09:00:00Z"}],"settings":{}}`,
	`{"v":1,"devices":[],"settings":{}}`,
	`{"v":1,"devices":null,"settings":{}}`,
	`{"v":1,"settings":{}}`,
	`{"v":1,"devices":[{"id":"用户-ü","bindings":[{"certificateName":"c\u0041","token":"t\"","boundAt":"2026-12-06T09:00:00Z"}],"updatedAt":"2026-12-06T09:00:00Z"}],"settings":{}}`,
	`{"v":1,"devices":[{"id":"p","bindings":[],"updatedAt":"2026-12-06T09:00:00\u005a"}],"settings":{}}`,
	`{"v":1,"devices":[{"id":"p","bindings":[],"updatedAt":"2026-12-06T25:00:00Z"}],"settings":{}}`,
	`{"v":1,"devices":[{"id":"p","bindings":[],"updatedAt":null}],"settings":{}}`,
	`{"v":1,"settings":{}} `,
	`{"v":1,"settings":{}}x`,
	`{"v":1,"settings":{},"settings":{"mode":"None"}}`,
	`{"v":01}`,
	`{"v":1.0}`,
	`{"v":1e0}`,
	`{"v":-1}`,
	`{"v":1234567890}`,
	"{\"v\":1,\"devices\":[{\"id\":\"\x01\",\"bindings\":null,\"updatedAt\":\"2026-12-06T09:00:00Z\"}]}",
	// Not records: both must refuse.
	`{"v":2}`,
	`{"v":"1"}`,
	`{"v":1,"devices":{}}`,
	`{"v":1,"devices":[{"bindings":[{"boundAt":"yesterday"}]}]}`,
	`{"v":1`,
	`[]`,
	``,
}

func FuzzDecodeUserMatchesEncodingJSON(f *testing.F) {
	for _, s := range recordSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want User
		wantErr := json.Unmarshal(raw, &want)
		if wantErr == nil && want.Version != RecordVersion {
			wantErr = errors.New("not the record version") // decodeUser refuses it too
		}
		got, err := decodeUser(raw)
		if _, isTime := errors.AsType[*time.ParseError](wantErr); isTime && err == nil && bytes.ContainsRune(raw, '\\') {
			// encoding/json parses a time's string without unescaping it
			// (golang/go#47353) and refuses an escaped time; the v2
			// decoder unescapes it first and reads it. A known difference,
			// in the store's favour, that no record the store writes has.
			t.Skip("escaped time string")
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeUser(%q) error %v, encoding/json's %v", raw, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeUser(%q)\n = %#v\nencoding/json reads\n   %#v", raw, got, want)
		}
	})
}

func TestShardIndexIsFNV1a(t *testing.T) {
	ids := []string{"", "a", "user-00001", "用户", strings.Repeat("x", 128), "\x00\xff"}
	for _, id := range ids {
		for _, shards := range []int32{1, 7, 64, 1024} {
			h := fnv.New32a()
			h.Write([]byte(id))
			if got, want := ShardIndex(id, shards), int(h.Sum32()%uint32(shards)); got != want {
				t.Errorf("ShardIndex(%q, %d) = %d, FNV-1a gives %d", id, shards, got, want)
			}
		}
	}
	if got := ShardIndex("user", 0); got != 0 {
		t.Errorf("ShardIndex with 0 shards = %d, want 0", got)
	}
}

func TestLookupUserFindsRecordsByID(t *testing.T) {
	const rec = `{"v":1,"devices":[{"id":"phone","bindings":[{"certificateName":"apns","token":"t","boundAt":"2026-12-06T09:00:00Z"}],"updatedAt":"2026-12-06T09:00:00Z"}]}`
	ids := []string{"u", "user-00001", "用户-ü", strings.Repeat("y", maxUserBytes), strings.Repeat("z", maxUserBytes+1)}
	data := map[string][]byte{}
	for _, id := range ids {
		data[UserKey(id)] = []byte(rec)
	}
	for _, id := range ids {
		u, err := lookupUser(data, id)
		if err != nil || len(u.Devices) != 1 || u.Devices[0].Bindings[0].Token != "t" {
			t.Errorf("lookupUser(%q) = %+v, %v; want the stored record", id, u, err)
		}
	}
	u, err := lookupUser(data, "someone-else")
	if err != nil || u.Version != RecordVersion || len(u.Devices) != 0 {
		t.Errorf("lookupUser of an unknown user = %+v, %v; want an empty record", u, err)
	}
	if got, want := UserKey("用户"), base64.RawURLEncoding.EncodeToString([]byte("用户")); got != want {
		t.Errorf("UserKey = %q, want %q", got, want)
	}
}

// TestStoredRecordsTakeTheCanonicalPath: what applyOps writes for users
// without settings is what canonicalUser reads, to the same User as
// encoding/json; with settings it leaves the record to the general decoder.
func TestStoredRecordsTakeTheCanonicalPath(t *testing.T) {
	at := time.Date(2026, 12, 6, 9, 0, 0, 123456789, time.FixedZone("", 8*3600))
	users := []User{
		{Version: RecordVersion, Devices: []Device{{ID: "phone", Bindings: []Binding{{CertificateName: "apns", Token: strings.Repeat("0f", 32), BoundAt: at}}, UpdatedAt: at.UTC()}}},
		{Version: RecordVersion, Devices: []Device{
			{ID: "用户的手机", Bindings: []Binding{{CertificateName: "huawei", Token: "t1", BoundAt: at}, {CertificateName: "fcm", Token: "t2"}}},
			{ID: "tablet", Bindings: []Binding{}},
			{ID: "watch"},
		}},
	}
	for _, u := range users {
		raw, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		var want User
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		got, ok := canonicalUser(raw)
		if !ok {
			t.Fatalf("canonicalUser(%s) declined a record the store writes", raw)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("canonicalUser(%s)\n = %#v\nencoding/json reads\n   %#v", raw, got, want)
		}
		u.Settings.Mode = ModeNone
		if raw, err = json.Marshal(u); err != nil {
			t.Fatal(err)
		}
		if _, ok := canonicalUser(raw); ok {
			t.Fatalf("canonicalUser(%s) read a record with settings, which it does not know", raw)
		}
	}
}
