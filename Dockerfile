# One image holding both binaries: the operator runs /manager (the entrypoint);
# the dispatcher Deployments it renders run /dispatcher from the same image.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
# Dependencies first, so source edits do not invalidate this layer.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

# Static binaries: distroless/static has no libc.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -o manager ./cmd/manager
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -o dispatcher ./dispatcher/cmd/dispatcher

FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /workspace/dispatcher /
USER 65532:65532

ENTRYPOINT ["/manager"]
