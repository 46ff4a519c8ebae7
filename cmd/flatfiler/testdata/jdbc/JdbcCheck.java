import java.math.BigDecimal;
import java.sql.*;
import java.time.OffsetDateTime;

// What a JDBC tool (DBeaver, Metabase) does with the SQL endpoint: connect,
// read the server's metadata, browse tables and columns, run a typed
// parameterized query. Prints one line per check; the Go test reads them.
public class JdbcCheck {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion());
            StringBuilder schemas = new StringBuilder();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.append(" ").append(rs.getString("TABLE_SCHEM"));
            }
            System.out.println("schemas" + schemas);
            StringBuilder tables = new StringBuilder();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.append(" ").append(rs.getString("TABLE_NAME"));
            }
            System.out.println("tables" + tables);
            StringBuilder cols = new StringBuilder();
            try (ResultSet rs = md.getColumns(null, "public", "transactions", "%")) {
                while (rs.next()) {
                    cols.append(" ").append(rs.getString("COLUMN_NAME")).append(":").append(rs.getString("TYPE_NAME"));
                    if (rs.getInt("DATA_TYPE") == Types.NUMERIC)
                        cols.append("(").append(rs.getInt("COLUMN_SIZE")).append(",").append(rs.getInt("DECIMAL_DIGITS")).append(")");
                }
            }
            System.out.println("columns" + cols);
            StringBuilder keys = new StringBuilder();
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "transactions")) {
                while (rs.next()) keys.append(" ").append(rs.getString("COLUMN_NAME"));
            }
            System.out.println("keys" + keys);
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT amount, posted_at, memo FROM transactions WHERE partner_id = ? AND transaction_id = ?")) {
                ps.setString(1, args[3]);
                ps.setString(2, args[4]);
                try (ResultSet rs = ps.executeQuery()) {
                    ResultSetMetaData rmd = rs.getMetaData();
                    while (rs.next()) {
                        BigDecimal amount = rs.getBigDecimal(1);
                        OffsetDateTime at = rs.getObject(2, OffsetDateTime.class);
                        System.out.println("row " + amount.toPlainString() + " " + at + " " + rs.getString(3)
                            + " " + rmd.getColumnTypeName(1) + " " + rmd.getColumnTypeName(2));
                    }
                }
            }
            try (Statement st = c.createStatement()) {
                st.setFetchSize(1000);
                try (ResultSet rs = st.executeQuery("SELECT count(*) FROM generate_series(1, 100000)")) {
                    rs.next();
                    System.out.println("count " + rs.getLong(1));
                }
                try {
                    st.executeQuery("DELETE FROM users");
                    System.out.println("refused no");
                } catch (SQLException e) {
                    System.out.println("refused " + e.getSQLState());
                }
            }
        }
    }
}
