package server_test

import (
	"database/sql"
	"fmt"
	"os"
)

// With KEYDESK_PG_STATEMENTS set, registry/pgtest starts PostgreSQL with
// pg_stat_statements loaded, and the API verification benchmark prints the
// statements that took the server's time: where a verification's database
// time goes, for docs/registry.md.

// pgStatReset clears the statement statistics of db's server.
func pgStatReset(db *sql.DB) {
	if os.Getenv("KEYDESK_PG_STATEMENTS") == "" {
		return
	}
	if _, err := db.Exec("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		fmt.Println("pgstat:", err)
	}
	db.Exec("SELECT pg_stat_statements_reset()")
}

// pgStatDump prints the 25 statements that took the most time since the
// reset, after n verifications.
func pgStatDump(db *sql.DB, n int) {
	if os.Getenv("KEYDESK_PG_STATEMENTS") == "" {
		return
	}
	rows, err := db.Query(`SELECT calls, round(total_exec_time::numeric,1), round((total_exec_time/calls)::numeric,4), round(total_plan_time::numeric,1), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 160) FROM pg_stat_statements ORDER BY total_exec_time+total_plan_time DESC LIMIT 25`)
	if err != nil {
		fmt.Println("pgstat:", err)
		return
	}
	defer rows.Close()
	fmt.Printf("pg_stat_statements after %d verifications: calls, total ms, ms/call, plan ms, rows, query\n", n)
	for rows.Next() {
		var calls, r int64
		var tot, per, plan float64
		var q string
		rows.Scan(&calls, &tot, &per, &plan, &r, &q)
		fmt.Printf("%8d %9.1f %8.4f %8.1f %8d %s\n", calls, tot, per, plan, r, q)
	}
}
