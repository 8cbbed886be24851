module github.com/keydesk/keydesk

go 1.24
