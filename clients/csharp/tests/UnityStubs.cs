// Small stand-ins for the UnityEngine types that RoomcastAvatarSync.cs uses, so the Unity
// example compiles (and runs, in the "unity" test mode) under Mono without Unity. They keep
// only the data the example reads and writes: no rendering, no physics, and no transform
// hierarchy math (position and localPosition are the same field). Not for shipping: in a
// Unity project the real UnityEngine.dll takes their place.

using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name = "";
        internal bool destroyed;

        public static void Destroy(Object target)
        {
            if (target != null)
            {
                target.destroyed = true;
            }
        }

        public static T Instantiate<T>(T original) where T : Object
        {
            var go = original as GameObject;
            if (go != null)
            {
                return new GameObject(go.name + "(Clone)") as T;
            }
            throw new NotSupportedException("the stubs instantiate GameObjects only");
        }
    }

    public class Component : Object
    {
        public GameObject gameObject { get; internal set; }
        public Transform transform { get { return gameObject.transform; } }
    }

    public class Behaviour : Component
    {
        public bool enabled = true;
    }

    public class MonoBehaviour : Behaviour
    {
    }

    public enum PrimitiveType
    {
        Sphere,
        Capsule,
        Cylinder,
        Cube,
        Plane,
        Quad,
    }

    public sealed class GameObject : Object
    {
        readonly List<Component> components = new List<Component>();

        public GameObject() : this("GameObject") { }

        public GameObject(string name)
        {
            this.name = name;
            transform = new Transform { gameObject = this };
            activeSelf = true;
        }

        public Transform transform { get; private set; }
        public bool activeSelf { get; private set; }
        public bool destroyedForTests { get { return destroyed; } }

        public void SetActive(bool value)
        {
            activeSelf = value;
        }

        public T AddComponent<T>() where T : Component, new()
        {
            var component = new T { gameObject = this };
            components.Add(component);
            return component;
        }

        public static GameObject CreatePrimitive(PrimitiveType type)
        {
            return new GameObject(type.ToString());
        }
    }

    public sealed class Transform : Component
    {
        public Vector3 position;
        public Quaternion rotation = Quaternion.identity;
        public Vector3 localScale = new Vector3(1, 1, 1);
        public Transform parent { get; private set; }

        public Vector3 localPosition { get { return position; } set { position = value; } }
        public Quaternion localRotation { get { return rotation; } set { rotation = value; } }

        public void SetParent(Transform newParent, bool worldPositionStays)
        {
            parent = newParent;
        }
    }

    public struct Vector3
    {
        public float x, y, z;

        public Vector3(float x, float y, float z)
        {
            this.x = x;
            this.y = y;
            this.z = z;
        }

        public static Vector3 operator *(Vector3 v, float s)
        {
            return new Vector3(v.x * s, v.y * s, v.z * s);
        }

        public override string ToString()
        {
            return "(" + x + ", " + y + ", " + z + ")";
        }
    }

    public struct Quaternion
    {
        public float x, y, z, w;

        public Quaternion(float x, float y, float z, float w)
        {
            this.x = x;
            this.y = y;
            this.z = z;
            this.w = w;
        }

        public static Quaternion identity { get { return new Quaternion(0, 0, 0, 1); } }
    }

    public static class Time
    {
        public static float time;
        public static float deltaTime;
        public static float unscaledTime;
        public static double unscaledTimeAsDouble;
    }

    public static class Debug
    {
        public static readonly List<string> Lines = new List<string>();

        public static void Log(object message)
        {
            lock (Lines)
            {
                Lines.Add("log: " + message);
            }
        }

        public static void LogWarning(object message)
        {
            lock (Lines)
            {
                Lines.Add("warning: " + message);
            }
        }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class HeaderAttribute : Attribute
    {
        public HeaderAttribute(string header) { }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class TooltipAttribute : Attribute
    {
        public TooltipAttribute(string tooltip) { }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class RangeAttribute : Attribute
    {
        public RangeAttribute(float min, float max) { }
    }
}
