module github.com/dispatchkit/dispatchkit/bench

go 1.26.0

require (
	github.com/alitto/pond/v2 v2.7.1
	github.com/dispatchkit/dispatchkit v0.0.0
	github.com/panjf2000/ants/v2 v2.12.1
	golang.org/x/sync v0.25.0
)

replace github.com/dispatchkit/dispatchkit => ../
