// armorlake through pgjdbc (Debian's libpostgresql-jdbc-java), the way DBeaver and other
// JDBC tools use it. tests/integration/pg_jdbc.rs compiles this file with javac and checks
// what it prints.
//
// Usage: java -cp postgresql.jar:DIR JdbcClient PORT NAMESPACE SINCE
//
// Prints one line per fact, tab-separated:
//   product NAME VERSION
//   table SCHEMA NAME TYPE                    (DatabaseMetaData.getTables)
//   column TABLE POSITION NAME TYPE_NAME DATA_TYPE NULLABLE   (getColumns of alerts)
//   count N                                   (alerts of NAMESPACE at or after SINCE)
//   first MICROS POD                          (the first of those, read as OffsetDateTime)
//   setting NAME VALUE                        (the session's SHOWs pgjdbc relies on)
// and "ok" at the end. Any failure is an exception: a stack trace and a non-zero exit.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.util.Properties;

public final class JdbcClient {
    private JdbcClient() {}

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/kubearmor";
        String namespace = args[1];
        OffsetDateTime since = OffsetDateTime.parse(args[2]);
        Properties props = new Properties();
        props.setProperty("user", "armorlake");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product\t" + meta.getDatabaseProductName() + "\t"
                    + meta.getDatabaseProductVersion());

            try (ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) {
                    System.out.println("table\t" + rs.getString("TABLE_SCHEM") + "\t"
                            + rs.getString("TABLE_NAME") + "\t" + rs.getString("TABLE_TYPE"));
                }
            }

            try (ResultSet rs = meta.getColumns(null, "public", "alerts", "%")) {
                while (rs.next()) {
                    System.out.println("column\t" + rs.getString("TABLE_NAME") + "\t"
                            + rs.getInt("ORDINAL_POSITION") + "\t" + rs.getString("COLUMN_NAME")
                            + "\t" + rs.getString("TYPE_NAME") + "\t" + rs.getInt("DATA_TYPE")
                            + "\t" + rs.getString("IS_NULLABLE"));
                }
            }

            // More executions than pgjdbc's prepareThreshold (5): the last ones run as a
            // named server-side statement with binary results.
            String sql = "SELECT count(*) FROM alerts WHERE namespace_name = ? AND timestamp >= ?";
            try (PreparedStatement ps = conn.prepareStatement(sql)) {
                long previous = -1;
                for (int i = 0; i < 7; i++) {
                    ps.setString(1, namespace);
                    ps.setObject(2, since);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        long n = rs.getLong(1);
                        // Rows only arrive, never leave: later counts are never smaller.
                        if (n < previous) {
                            throw new IllegalStateException("count went down: " + previous + " -> " + n);
                        }
                        if (i == 0) {
                            System.out.println("count\t" + n);
                        }
                        previous = n;
                    }
                }
            }

            String first = "SELECT timestamp, pod_name FROM alerts"
                    + " WHERE namespace_name = ? AND timestamp >= ? ORDER BY timestamp, pod_name LIMIT 1";
            try (PreparedStatement ps = conn.prepareStatement(first)) {
                for (int i = 0; i < 7; i++) {
                    ps.setString(1, namespace);
                    ps.setObject(2, since);
                    try (ResultSet rs = ps.executeQuery()) {
                        if (!rs.next()) {
                            throw new IllegalStateException("no alert of " + namespace);
                        }
                        OffsetDateTime ts = rs.getObject(1, OffsetDateTime.class);
                        if (i == 0) {
                            long micros = ts.toEpochSecond() * 1_000_000L + ts.getNano() / 1_000;
                            System.out.println("first\t" + micros + "\t" + rs.getString(2));
                        }
                    }
                }
            }

            try (Statement st = conn.createStatement()) {
                for (String name : new String[] {"DateStyle", "search_path", "server_version_num"}) {
                    try (ResultSet rs = st.executeQuery("SHOW " + name)) {
                        rs.next();
                        System.out.println("setting\t" + name + "\t" + rs.getString(1));
                    }
                }
            }
        }
        System.out.println("ok");
    }
}
