package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"

	"github.com/imcloud/im-push-operator/dispatcher/config"
)

// MaxTextBytes bounds a rendered title and body. Providers cap a whole
// payload at 4 KiB (APNs, FCM), so one field must leave room for the rest.
const MaxTextBytes = 1024

// Built-in hidden texts, used when the policy leaves HiddenTitle/HiddenBody
// empty; the same strings as the PushPolicy defaults.
const (
	DefaultHiddenTitle = "New message"
	DefaultHiddenBody  = "You have a new message"
)

// TemplateData is what title and body templates see.
type TemplateData struct {
	Sender       Sender
	Conversation Conversation
	Text         string
	// Mentioned is true when the message mentions the recipient or everyone.
	Mentioned  bool
	MentionAll bool
	// Recipient is the user id the notification is rendered for.
	Recipient string
}

// Rendered is a title and body ready to send, with the template execution
// errors that made a field fall back to its built-in default.
type Rendered struct {
	Title  string
	Body   string
	Errors []error
}

// Renderer holds a policy with its templates parsed. Build one per loaded
// config and share it: it is safe for concurrent use.
type Renderer struct {
	policy config.Policy
	// variants is keyed by normalised language; "" is the default.
	variants map[string]variant
	hidden   variant
	zones    *zoneCache
}

// variant is one language's templates; a nil template means the built-in
// default for that field.
type variant struct {
	title, body *textTemplate
}

// NewRenderer parses every template of p. The policy is copied, so later
// changes to p do not reach the Renderer.
func NewRenderer(p *config.Policy) (*Renderer, error) {
	r := &Renderer{policy: *p, variants: map[string]variant{}, zones: newZoneCache()}
	if p.QuietHours != nil {
		q := *p.QuietHours
		r.policy.QuietHours = &q
	}
	r.policy.Templates = append([]config.Template(nil), p.Templates...)
	var errs []error
	for _, t := range p.Templates {
		lang := normLanguage(t.Language)
		if _, dup := r.variants[lang]; dup {
			// ValidatePolicy reports duplicates; here the first one wins.
			continue
		}
		var v variant
		var err error
		if v.title, err = parseTemplate(templateName("title", t.Language), t.Title); err != nil {
			errs = append(errs, fmt.Errorf("template for language %s, field title: %w", quoteLanguage(t.Language), err))
		}
		if v.body, err = parseTemplate(templateName("body", t.Language), t.Body); err != nil {
			errs = append(errs, fmt.Errorf("template for language %s, field body: %w", quoteLanguage(t.Language), err))
		}
		r.variants[lang] = v
	}
	var err error
	if r.hidden.title, err = parseTemplate("hiddenTitle", p.HiddenTitle); err != nil {
		errs = append(errs, fmt.Errorf("template hiddenTitle: %w", err))
	}
	if r.hidden.body, err = parseTemplate("hiddenBody", p.HiddenBody); err != nil {
		errs = append(errs, fmt.Errorf("template hiddenBody: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Policy returns the Renderer's copy of the policy.
func (r *Renderer) Policy() *config.Policy { return &r.policy }

// Render produces the title and body of n for one recipient whose language
// setting is language. Order of precedence per field: the request's push
// override, then the policy template (the hidden one when ShowContent is
// false), then the built-in default. Both fields are valid UTF-8 of at most
// MaxTextBytes.
func (r *Renderer) Render(n *Notification, recipient, language string) Rendered {
	data := &TemplateData{
		Sender:       n.Sender,
		Conversation: n.Conversation,
		Text:         n.Message.Text,
		Mentioned:    mentions(n, recipient),
		MentionAll:   n.Message.MentionAll,
		Recipient:    recipient,
	}
	v := r.hidden
	defTitle, defBody := DefaultHiddenTitle, DefaultHiddenBody
	if r.policy.ShowContent {
		v = r.pick(language)
		defTitle, defBody = defaultTitle(n), defaultBody(n)
	}
	var out Rendered
	var overTitle, overBody string
	if n.Push != nil {
		overTitle, overBody = n.Push.Title, n.Push.Body
	}
	out.Title = r.field(overTitle, v.title, data, defTitle, &out.Errors)
	out.Body = r.field(overBody, v.body, data, defBody, &out.Errors)
	return out
}

func (r *Renderer) field(override string, t *textTemplate, data *TemplateData, def string, errs *[]error) string {
	if override != "" {
		return clean(override)
	}
	if t == nil {
		return clean(def)
	}
	s, err := execute(t, data)
	if err != nil {
		*errs = append(*errs, err)
		return clean(def)
	}
	return clean(s)
}

// pick chooses the user's language exactly, then ever shorter prefixes of
// the tag ("zh-hant-tw", "zh-hant", "zh"), then the default. The prefixes go
// beyond "exact then base" so zh-Hant-TW reaches a zh-Hant template rather
// than a Simplified zh one.
func (r *Renderer) pick(language string) variant {
	lang := normLanguage(language)
	for lang != "" {
		if v, ok := r.variants[lang]; ok {
			return v
		}
		i := strings.LastIndexByte(lang, '-')
		if i < 0 {
			break
		}
		lang = lang[:i]
	}
	return r.variants[""]
}

// normLanguage folds case and Android-style underscores: BCP 47 tags are
// case-insensitive and clients report "zh_CN" as often as "zh-CN".
func normLanguage(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), "_", "-"))
}

func quoteLanguage(lang string) string {
	if lang == "" {
		return `"" (default)`
	}
	return fmt.Sprintf("%q", lang)
}

func templateName(field, lang string) string {
	if lang == "" {
		return field + "[default]"
	}
	return field + "[" + lang + "]"
}

// parseTemplate returns nil for an empty source: the field then uses the
// built-in default.
func parseTemplate(name, src string) (*textTemplate, error) {
	if src == "" {
		return nil, nil
	}
	t, err := template.New(name).Parse(src)
	if err != nil {
		return nil, err
	}
	return &textTemplate{t: t, parts: plainParts(t)}, nil
}

// textTemplate is a parsed template and, when it is plain, its parts.
type textTemplate struct {
	t *template.Template
	// parts is set when the template is only text and fields of
	// TemplateData, as most notification templates are
	// ("{{.Sender.DisplayName}}"); execute then writes them itself.
	// text/template's execution was half of the policy's CPU in `make
	// bench`'s one-recipient windows (2026-12-07) and 10 of the 47
	// allocations per notification in BenchmarkNotification.
	parts []templatePart
}

// templatePart is literal text, or the TemplateData field at index (a
// string or a bool) printed as text/template prints it.
type templatePart struct {
	text  string
	index []int
	kind  reflect.Kind
}

var templateDataType = reflect.TypeFor[TemplateData]()

// plainParts returns t's parts when its tree holds only text and actions
// that print one field path of TemplateData of string or bool kind (no
// pipelines, functions, variables or control structures), else nil.
func plainParts(t *template.Template) []templatePart {
	if t.Tree == nil || t.Root == nil {
		return nil
	}
	parts := []templatePart{} // not nil: a template of nothing (a comment) is plain too
	for _, n := range t.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			parts = append(parts, templatePart{text: string(n.Text)})
		case *parse.ActionNode:
			p, ok := fieldPart(n.Pipe)
			if !ok {
				return nil
			}
			parts = append(parts, p)
		default:
			return nil
		}
	}
	return parts
}

func fieldPart(pipe *parse.PipeNode) (templatePart, bool) {
	if pipe == nil || len(pipe.Decl) > 0 || len(pipe.Cmds) != 1 || len(pipe.Cmds[0].Args) != 1 {
		return templatePart{}, false
	}
	f, ok := pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok {
		return templatePart{}, false
	}
	typ := templateDataType
	var index []int
	for _, name := range f.Ident {
		if typ.Kind() != reflect.Struct {
			return templatePart{}, false
		}
		// One level at a time: a promoted field's index is longer.
		sf, ok := typ.FieldByName(name)
		if !ok || !sf.IsExported() || len(sf.Index) != 1 {
			return templatePart{}, false
		}
		index = append(index, sf.Index[0])
		typ = sf.Type
	}
	// A type with methods could print through String or Error.
	if k := typ.Kind(); (k != reflect.String && k != reflect.Bool) || reflect.PointerTo(typ).NumMethod() > 0 {
		return templatePart{}, false
	}
	return templatePart{index: index, kind: typ.Kind()}, true
}

// executePlain writes a plain template's parts, as text/template would,
// into a buffer on the stack for the usual short texts.
func (tt *textTemplate) executePlain(data *TemplateData) string {
	var small [256]byte
	buf := small[:0]
	v := reflect.ValueOf(data).Elem()
	for _, p := range tt.parts {
		s := p.text
		switch {
		case p.index == nil:
		case p.kind == reflect.Bool:
			s = strconv.FormatBool(v.FieldByIndex(p.index).Bool())
		default:
			s = v.FieldByIndex(p.index).String()
		}
		var all bool
		if buf, all = appendCapped(buf, s); !all {
			break
		}
	}
	return string(buf)
}

// errOutputFull stops a template once it has produced more than can be
// sent, so a runaway range neither grows memory nor runs on.
var errOutputFull = errors.New("template output limit reached")

type capWriter struct {
	buf []byte
}

// capBytes leaves room past MaxTextBytes so truncation can see whether a
// rune was cut.
const capBytes = MaxTextBytes + utf8.UTFMax

func (w *capWriter) Write(p []byte) (int, error) {
	before := len(w.buf)
	var all bool
	if w.buf, all = appendCapped(w.buf, p); !all {
		return len(w.buf) - before, errOutputFull
	}
	return len(p), nil
}

// appendCapped appends p to buf up to capBytes in all and reports whether
// all of p fit: the one cap of both text/template's output (capWriter) and
// a plain template's (executePlain).
func appendCapped[T ~string | ~[]byte](buf []byte, p T) ([]byte, bool) {
	if room := capBytes - len(buf); len(p) > room {
		return append(buf, p[:room]...), false
	}
	return append(buf, p...), true
}

func execute(tt *textTemplate, data *TemplateData) (string, error) {
	if tt.parts != nil {
		return tt.executePlain(data), nil
	}
	var w capWriter
	// A copy: text/template's data escapes to the heap, and so the
	// recipient's TemplateData, on the stack, is not moved there for the
	// plain templates too.
	copied := *data
	err := tt.t.Execute(&w, &copied)
	if err != nil && !errors.Is(err, errOutputFull) {
		// text/template's error already names the template and position.
		return "", err
	}
	return string(w.buf), nil
}

// clean makes s valid UTF-8 of at most MaxTextBytes. Invalid bytes become
// U+FFFD (vendors sending form-encoded text would pass them on raw), which
// can lengthen s, so it is bounded again.
func clean(s string) string {
	return truncate(strings.ToValidUTF8(truncate(s), "\uFFFD"))
}

// truncate cuts s on a rune boundary to MaxTextBytes, ending in an ellipsis
// so a reader sees the text goes on.
func truncate(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	const ellipsis = "…"
	cut := MaxTextBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// defaultTitle: a named group's name, else who sent it.
func defaultTitle(n *Notification) string {
	if n.Conversation.Type == ConversationGroup && n.Conversation.Name != "" {
		return n.Conversation.Name
	}
	return senderName(n)
}

// defaultBody: the text; in a named group the title no longer says who
// wrote, so the sender goes in front ("Alice: hi").
func defaultBody(n *Notification) string {
	if n.Conversation.Type == ConversationGroup && n.Conversation.Name != "" && n.Message.Text != "" {
		return senderName(n) + ": " + n.Message.Text
	}
	return n.Message.Text
}

func senderName(n *Notification) string {
	if n.Sender.DisplayName != "" {
		return n.Sender.DisplayName
	}
	return n.Sender.ID
}

// mentions reports whether n mentions user, by name or through mentionAll.
func mentions(n *Notification, user string) bool {
	if n.Message.MentionAll {
		return true
	}
	for _, m := range n.Message.Mentions {
		if m == user {
			return true
		}
	}
	return false
}

// maxCachedZones bounds the zone cache: zone names come from user settings,
// and only the few hundred IANA names are worth keeping.
const maxCachedZones = 1024

// zoneCache keeps loaded locations: time.LoadLocation reads and parses zone
// data on every call, far too slow for each recipient of each notification.
type zoneCache struct {
	mu    sync.RWMutex
	zones map[string]*time.Location
}

func newZoneCache() *zoneCache { return &zoneCache{zones: map[string]*time.Location{}} }

// get returns the named zone. An empty name is UTC. An unknown name is
// also treated as UTC rather than dropping quiet hours altogether: the
// operator validates the policy's zone, the API validates users' zones, so
// an unknown one can only come from a tzdata difference, and the window in
// UTC is closer to intended than none.
func (c *zoneCache) get(name string) *time.Location {
	// "Local" would be whatever zone the dispatcher's host runs in.
	if name == "" || name == "UTC" || name == "Local" {
		return time.UTC
	}
	c.mu.RLock()
	loc, ok := c.zones[name]
	c.mu.RUnlock()
	if ok {
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = time.UTC
	}
	c.mu.Lock()
	if len(c.zones) < maxCachedZones {
		c.zones[name] = loc
	}
	c.mu.Unlock()
	return loc
}
