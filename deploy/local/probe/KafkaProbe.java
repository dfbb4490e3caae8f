// Health probe for deploy/local/stack: succeeds once a Kafka broker answers a
// metadata request (describeCluster), retrying until the deadline.
// Usage: java -cp <kafka lib>/* KafkaProbe <bootstrap> <wait-seconds> [client.properties]
// The properties file (TLS and SASL settings of a secure stack) is read last.
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class KafkaProbe {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        if (args.length > 2) {
            try (InputStream in = new FileInputStream(args[2])) {
                props.load(in);
            }
        }
        String last = "no answer";
        try (Admin admin = Admin.create(props)) {
            do {
                try {
                    DescribeClusterResult r = admin.describeCluster();
                    int brokers = r.nodes().get(3, TimeUnit.SECONDS).size();
                    String id = r.clusterId().get(3, TimeUnit.SECONDS);
                    System.out.println("cluster " + id + ", " + brokers + " broker(s)");
                    return;
                } catch (Exception e) {
                    last = e.getCause() != null ? e.getCause().toString() : e.toString();
                    Thread.sleep(500);
                }
            } while (System.nanoTime() < deadline);
        }
        System.out.println(last);
        System.exit(1);
    }
}
