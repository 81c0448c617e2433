module github.com/dispatchkit/dispatchkit/bench

go 1.26.0

require (
	github.com/alitto/pond/v2 v2.7.1
	github.com/coder/websocket v1.8.15
	github.com/dispatchkit/dispatchkit v0.0.0
	github.com/gorilla/websocket v1.5.3
	github.com/panjf2000/ants/v2 v2.12.1
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.25.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect

replace github.com/dispatchkit/dispatchkit => ../
