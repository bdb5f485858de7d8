// Package policy decides, with no I/O, which of a recipient's devices get a
// notification, with what text, through which bindings in which order
// (DESIGN.md "Flow of one notification", step 3).
package policy

// Notification is one offline message as the IM server sends it to
// POST /v1/notifications (the server decodes the JSON straight into it).
type Notification struct {
	// ID is the idempotency key; provider collapse ids derive from it.
	ID           string       `json:"id"`
	Sender       Sender       `json:"sender"`
	Conversation Conversation `json:"conversation"`
	Recipients   []Recipient  `json:"recipients"`
	Message      Message      `json:"message"`
	Push         *Push        `json:"push,omitempty"`
}

type Sender struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName,omitempty"`
}

// Conversation types.
const (
	ConversationSingle = "single"
	ConversationGroup  = "group"
)

type Conversation struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
}

// Recipient is one user and the ids of their devices that are online now.
type Recipient struct {
	UserID        string   `json:"userId"`
	OnlineDevices []string `json:"onlineDevices,omitempty"`
}

type Message struct {
	Text       string   `json:"text,omitempty"`
	Mentions   []string `json:"mentions,omitempty"`
	MentionAll bool     `json:"mentionAll,omitempty"`
	// Transient messages (typing indicators, signalling) never push.
	Transient bool `json:"transient,omitempty"`
}

// Push types.
const (
	PushAlert      = "alert"
	PushBackground = "background"
	PushVoIP       = "voip"
)

// Push holds per-notification overrides.
type Push struct {
	Title       string            `json:"title,omitempty"`
	Body        string            `json:"body,omitempty"`
	Badge       *int              `json:"badge,omitempty"`
	Sound       string            `json:"sound,omitempty"`
	Data        map[string]string `json:"data,omitempty"`
	CollapseKey string            `json:"collapseKey,omitempty"`
	// TTL in seconds; 0 = the policy's.
	TTLSeconds int64  `json:"ttlSeconds,omitempty"`
	PushType   string `json:"pushType,omitempty"`
	// Force overrides quiet hours (not the user's mode None).
	Force bool `json:"force,omitempty"`
}
