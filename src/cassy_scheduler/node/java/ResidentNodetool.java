// One long-lived JVM that runs Cassandra's own nodetool commands on request, so a backup pays
// for a JMX connection (milliseconds) instead of a JVM start (a second of CPU) per command.
//
// Protocol, one line each way (UTF-8):
//   request:  ID ARG ARG ...      every ARG URL-encoded (so no argument holds a space)
//   reply:    ID EXIT OUT ERR     OUT and ERR Base64 of what the command printed
// "ready" is printed once the nodetool classes are loaded. Requests run concurrently; replies
// may come in any order. Anything a command prints on System.out/err goes to our stderr, never
// into the reply stream. nodetool calls System.exit when it cannot connect: on the JDKs
// Cassandra 5.0 runs on (11, 17) a security manager turns that into a failed call; a JDK that
// refuses one (18 and later, unless run with -Djava.security.manager=allow) exits instead,
// failing the calls in flight, and the server's next call starts another JVM.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import org.apache.cassandra.tools.INodeProbeFactory;
import org.apache.cassandra.tools.NodeProbe;
import org.apache.cassandra.tools.NodeTool;
import org.apache.cassandra.tools.Output;

public final class ResidentNodetool {
    private static final class Probes implements INodeProbeFactory {
        @Override
        public NodeProbe create(String host, int port) throws IOException {
            return new NodeProbe(host, port);
        }

        @Override
        public NodeProbe create(String host, int port, String user, String password)
                throws IOException {
            return new NodeProbe(host, port, user, password);
        }
    }

    /** The status a command's System.exit asked for, if it called it. */
    private static final ThreadLocal<Integer> EXIT = new ThreadLocal<>();

    /** System.exit inside a command, turned into an exception that ends only that command;
     * its message is a marker the server drops from the command's output. */
    private static final class ExitCalled extends SecurityException {
        ExitCalled() {
            super("cassy-resident-exit");
        }
    }

    @SuppressWarnings("removal")
    private static void refuseExit() {
        try {
            System.setSecurityManager(new SecurityManager() {
                @Override
                public void checkPermission(java.security.Permission permission) {}

                @Override
                public void checkPermission(java.security.Permission permission, Object context) {}

                @Override
                public void checkExit(int status) {
                    if (!Thread.currentThread().getName().equals("main")) {
                        EXIT.set(status);
                        throw new ExitCalled();
                    }
                }
            });
        } catch (UnsupportedOperationException | SecurityException absent) {
            System.err.println("no security manager on this JDK: a command that exits ends this JVM");
        }
    }

    public static void main(String[] args) throws IOException {
        refuseExit();
        PrintStream replies = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        System.setOut(System.err);
        INodeProbeFactory probes = new Probes();
        ExecutorService calls = Executors.newCachedThreadPool(task -> {
            Thread thread = new Thread(task, "nodetool-call");
            thread.setDaemon(true);
            return thread;
        });
        synchronized (replies) {
            replies.println("ready");
            replies.flush();
        }
        BufferedReader requests =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = requests.readLine()) != null) {
            String[] words = line.split(" ");
            if (words.length < 2) {
                continue;
            }
            String id = words[0];
            String[] command = new String[words.length - 1];
            for (int i = 1; i < words.length; i++) {
                command[i - 1] = URLDecoder.decode(words[i], StandardCharsets.UTF_8);
            }
            calls.submit(() -> answer(replies, probes, id, command));
        }
        // stdin closed: the server is gone, so are we (daemon threads do not hold the exit).
        System.exit(0);
    }

    private static void answer(
            PrintStream replies, INodeProbeFactory probes, String id, String[] command) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int exit;
        EXIT.remove();
        try (PrintStream outStream = new PrintStream(out, true, StandardCharsets.UTF_8);
                PrintStream errStream = new PrintStream(err, true, StandardCharsets.UTF_8)) {
            try {
                exit = new NodeTool(probes, new Output(outStream, errStream)).execute(command);
            } catch (Throwable failure) {
                if (EXIT.get() == null) {
                    failure.printStackTrace(errStream);
                }
                exit = 2;
            }
            Integer exited = EXIT.get();
            if (exited != null) {
                exit = exited == 0 ? 2 : exited; // a command cut short has not succeeded
            }
        }
        Base64.Encoder base64 = Base64.getEncoder();
        String reply = id + " " + exit + " " + base64.encodeToString(out.toByteArray()) + " "
                + base64.encodeToString(err.toByteArray());
        synchronized (replies) {
            replies.println(reply);
            replies.flush();
        }
    }
}
