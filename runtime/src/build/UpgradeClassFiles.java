import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.jar.JarOutputStream;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.Opcodes;

/**
 * Build tool (runtime/pom.xml runs it with java's source launcher and ASM, which jnr-ffi
 * already brings): rewrites the class files of a jar that are older than Java 6 as Java 8
 * class files with stack map frames, in place. The JVM's class-data archive and AOT cache
 * refuse classes older than Java 6 ("Pre JDK 6 class not supported by CDS"), and picocli's
 * jar is compiled for Java 5: its 173 classes were read, parsed and verified from the jar by
 * every command without a daemon. The code is the same; only the version number and the
 * frames (computed by ASM from the code) change. A jar with nothing that old is left as it is.
 *
 * Usage: java -cp asm.jar UpgradeClassFiles.java JAR
 */
public final class UpgradeClassFiles {
  public static void main(String[] args) throws Exception {
    Path jarPath = Path.of(args[0]);
    Path tmp = jarPath.resolveSibling(jarPath.getFileName() + ".tmp");
    int upgraded = 0;
    try (URLClassLoader loader = new URLClassLoader(new URL[] {jarPath.toUri().toURL()},
            UpgradeClassFiles.class.getClassLoader());
        JarFile jar = new JarFile(jarPath.toFile());
        JarOutputStream out = new JarOutputStream(Files.newOutputStream(tmp))) {
      var entries = jar.entries();
      while (entries.hasMoreElements()) {
        JarEntry e = entries.nextElement();
        byte[] b = jar.getInputStream(e).readAllBytes();
        if (e.getName().endsWith(".class") && b.length > 8
            && ((b[6] & 0xff) << 8 | (b[7] & 0xff)) < Opcodes.V1_6) {
          ClassWriter w = new ClassWriter(ClassWriter.COMPUTE_FRAMES) {
            @Override
            protected ClassLoader getClassLoader() {
              return loader; // the common superclass of two of the jar's own types
            }
          };
          new ClassReader(b).accept(new ClassVisitor(Opcodes.ASM9, w) {
            @Override
            public void visit(int version, int access, String name, String signature,
                String superName, String[] interfaces) {
              super.visit(Opcodes.V1_8, access, name, signature, superName, interfaces);
            }
          }, ClassReader.SKIP_FRAMES);
          b = w.toByteArray();
          upgraded++;
        }
        JarEntry o = new JarEntry(e.getName());
        o.setTime(e.getTime());
        out.putNextEntry(o);
        out.write(b);
        out.closeEntry();
      }
    }
    if (upgraded == 0) {
      Files.delete(tmp);
      return;
    }
    Files.move(tmp, jarPath, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }
}
